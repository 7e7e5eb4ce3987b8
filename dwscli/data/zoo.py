"""Model zoos: many small networks of one spec, stored as sharded safetensors + a manifest.

This module is the public face of the zoo format; the parts live in

- :mod:`dwscli.data.zoo_format`: the layout, ``zoo.json`` (:class:`ZooMeta`), shard planning
  (:func:`plan_shards`, :func:`select_part` for ``--shard i/n``) and per-net seeds
  (:func:`net_seed`);
- :mod:`dwscli.data.zoo_writer`: :class:`ZooWriter` (atomic shards, resume, finalize);
- :mod:`dwscli.data.zoo_splits`: :func:`split_by_source` (by network and by source image);
- :mod:`dwscli.data.zoo_loader`: :class:`Zoo` (streaming batches, in-memory load, export);
- :mod:`dwscli.data.zoo_tools`: :func:`merge_zoos`, :func:`verify_zoo`, :func:`zoo_info`.

On disk::

    DIR/zoo.json                        format version, kind, spec, dataset, conventions, config,
                                        seed, count, shard_size, dtype, split config, creation info
    DIR/shards/shard-00000.safetensors  W1 [n, d1, d0], b1 [n, d1], …, WL, bL (float32 or fp16)
    DIR/manifest.d/shard-00000.jsonl    that shard's manifest lines (written with the shard)
    DIR/manifest.jsonl                  one line per net, shard order: id, net, shard, index,
                                        hparams, labels, metrics
    DIR/splits.json                     {"train": [ids], "val": [ids], "test": [ids]}
"""

from __future__ import annotations

from dwscli.data.zoo_format import (
    KINDS,
    ZooMeta,
    net_generator,
    net_id,
    net_seed,
    parse_part,
    plan_shards,
    select_part,
)
from dwscli.data.zoo_loader import Zoo, ZooBatch, conventions_metadata
from dwscli.data.zoo_splits import split_by_source, split_from_config
from dwscli.data.zoo_tools import merge_zoos, verify_zoo, zoo_info
from dwscli.data.zoo_writer import ZooWriter, completed_shards, default_shard_size, finalize_zoo

__all__ = [
    "KINDS",
    "Zoo",
    "ZooBatch",
    "ZooMeta",
    "ZooWriter",
    "completed_shards",
    "conventions_metadata",
    "default_shard_size",
    "finalize_zoo",
    "merge_zoos",
    "net_generator",
    "net_id",
    "net_seed",
    "parse_part",
    "plan_shards",
    "select_part",
    "split_by_source",
    "split_from_config",
    "verify_zoo",
    "zoo_info",
]
