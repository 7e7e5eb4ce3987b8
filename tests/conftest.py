"""Test-wide settings.

The tests run many tiny tensor operations; one torch thread is as fast for them, and it keeps
OpenMP from spinning on a core that another process (a background zoo job) is using.
"""

import torch

torch.set_num_threads(1)
