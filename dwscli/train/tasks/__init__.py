"""The training tasks, one module each, and :data:`TASKS`, the list a config's ``task:`` names.

Adding a task: a :class:`~dwscli.train.tasks.base.Task` subclass in a new module of this
package, and one more entry in :data:`TASKS` below; the trainer does not change.
"""

from __future__ import annotations

from dwscli.errors import DwsError
from dwscli.train.tasks.accuracy import AccuracyTask
from dwscli.train.tasks.adapt import AdaptTask
from dwscli.train.tasks.base import BaselineMetrics, ModelKind, Task, kendall_tau, r2_score
from dwscli.train.tasks.embed import EmbedTask
from dwscli.train.tasks.inr_classify import InrClassifyTask
from dwscli.train.tasks.inr_edit import InrEditTask

#: Every task, by the name a config's ``task:`` section gives.
TASKS: dict[str, type[Task]] = {
    task.name: task for task in (AccuracyTask, InrClassifyTask, AdaptTask, EmbedTask, InrEditTask)
}


def task_class(name: str, source: str | None = None) -> type[Task]:
    """The task called ``name``; an unknown name is a one-line error naming ``source``."""
    try:
        return TASKS[name]
    except KeyError:
        where = f"{source}: task" if source else "task"
        raise DwsError(
            f"{where}: unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}"
        ) from None


__all__ = [
    "TASKS",
    "BaselineMetrics",
    "ModelKind",
    "Task",
    "kendall_tau",
    "r2_score",
    "task_class",
]
