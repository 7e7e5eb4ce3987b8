"""The trainer: one loop for every task (see docs/design.md), single-process or under torchrun.

Per run: open the zoo and the task, build the model with the seed, fit its input normalisation on
a seeded sample of training nets, then for each epoch train on a fresh uniform shuffle (AdamW,
cosine or constant schedule after linear warm-up, optional gradient clipping, optional random
hidden-neuron permutations and the weight-space augmentations of ``train.augment``), validate
every ``eval_every`` epochs, keep the best model by the task's validation score, stop early after
``patience`` epochs without a better one, and save the resumable state atomically. At the end the
best model is evaluated on the test split and written as a processor (weights + card).

Distributed: the loss of a step is ``sum of this rank's per-net losses * world / global batch``
and DDP averages gradients over ranks, so every step applies the gradient of the mean loss over
the *global* batch, exactly as one process would (up to float summation order).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dwscli.data.zoo import Zoo
from dwscli.data.zoo_format import HELDOUT_SPLIT
from dwscli.data.zoo_splits import split_records
from dwscli.errors import DwsError
from dwscli.nn.archs import get_arch
from dwscli.nn.heads import live_head_units, net_batch_norms, recalibrate_batch_norms
from dwscli.nn.models import pooled_features
from dwscli.train import card as cards
from dwscli.train import data, distributed
from dwscli.train.augment import augment_batch, check_zoo, input_range
from dwscli.train.config import TrainConfig, load_config
from dwscli.train.evaluation import collect_values, training_sample
from dwscli.train.netstore import ShardMaps, SplitNets
from dwscli.train.probes import init_probes
from dwscli.train.report import Reporter, TrainReporter, TrainResult
from dwscli.train.start import start_from_processor
from dwscli.train.state import capture_rng, load_state, restore_rng, save_state
from dwscli.train.tasks import BaselineMetrics, Task, task_class
from dwscli.train.tasks.inr_edit import prepare_output_solve


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to zero at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class Trainer:
    """State of one run; :meth:`run` does the work. Use :func:`train` rather than this class."""

    def __init__(
        self,
        config: TrainConfig,
        env: distributed.DistEnv,
        device: torch.device,
        reporter: TrainReporter | None,
    ) -> None:
        self.config, self.env, self.device = config, env, device
        self.settings = s = config.train
        self.reporter: TrainReporter = reporter or Reporter()
        if s.batch_size % env.world_size:
            raise DwsError(
                f"train.batch_size {s.batch_size} is not divisible by the {env.world_size} "
                "processes; the global batch is split evenly across them"
            )
        self.zoo = Zoo.open(config.zoo)
        self.task: Task = task_class(config.task.name)(config.task.options, self.zoo)
        if s.augment is not None:
            check_zoo(s.augment, self.zoo.kind, self.zoo.spec.input_dim, str(config.zoo))
        self.arch = get_arch(config.model.arch)
        maps = ShardMaps(self.zoo)
        keys = self.task.target_keys()
        self.train_nets = SplitNets.of(
            self.zoo, "train", keys, maps, subset=s.max_train_nets, seed=s.seed, where=s.where
        )
        self.val_nets = SplitNets.of(self.zoo, "val", keys, maps, where=s.where)
        self.test_nets = SplitNets.of(self.zoo, "test", keys, maps, where=s.where)
        # nets of a held-out recipe region (recipe-diverse zoos): scored beside test, never
        # trained or selected on
        self.heldout_nets: SplitNets | None = None
        if self.zoo.splits.get(HELDOUT_SPLIT) and split_records(self.zoo, HELDOUT_SPLIT, s.where):
            self.heldout_nets = SplitNets.of(self.zoo, HELDOUT_SPLIT, keys, maps, where=s.where)
        for nets in (self.train_nets, self.val_nets, self.test_nets, self.heldout_nets):
            if nets is not None:
                self.task.check_targets(nets.name, nets.targets, nets.ids)
        # A fixed sample of training nets: the normaliser is fitted on it, and the loss on it
        # before and after training shows what training did (cheaper than the whole split).
        self.sample_positions = training_sample(len(self.train_nets), s.normalizer_nets, s.seed)

        torch.manual_seed(s.seed)
        self.model: nn.Module = self.arch.build(
            self.zoo.spec, self.task.kind, config.model.options, self.task.out_features
        )
        if s.ood_features and pooled_features(self.model) is None:
            raise DwsError(
                f"{config.source or config.name}: train.ood_features checks an invariant "
                f"model's pooled features, and {type(self.model).__name__} has none",
                hint="drop train.ood_features",
            )
        fit_batch = self.train_nets.batch(self.sample_positions)
        self.arch.fit_normalizer(self.model, fit_batch.space)
        init_probes(self.model, self.zoo, s.seed)
        prepare_output_solve(self.model, self.task, str(config.source or config.name))
        if s.init_from is not None:
            start_from_processor(
                self.model,
                s.init_from,
                config.model.arch,
                str(config.source or config.name),
                config.model.to_dict(),
            )
        self.model.to(device)
        # Dropout draws from the global RNG: one stream per rank, the same for every run.
        torch.manual_seed(data.derived_seed(s.seed, "dropout", env.rank))
        self.forward_model: nn.Module = self.model
        if env.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(
                self.model,
                device_ids=[device.index] if device.type == "cuda" else None,
                # the weight normalisation is fixed; head batch norms update their running
                # statistics from the global batch, identically on every rank
                broadcast_buffers=False,
            )
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay
        )
        self.steps_per_epoch = data.steps_per_epoch(
            len(self.train_nets), s.batch_size, env.world_size
        )
        if self.steps_per_epoch == 0:
            raise DwsError(f"{config.zoo}: the training split has too few nets for one step")
        total = s.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, s.warmup_steps, total, s.schedule)
        )
        # progress of the run (restored on resume)
        self.epoch = 0
        self.best_score: tuple[float, float] | None = None
        self.best_epoch = 0
        self.best_val: dict[str, float] = {}
        self.best_state: dict[str, Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.warned_stall = False  # the stalled-loss warning is given once per run

    # ------------------------------------------------------------------------------------------
    def evaluate(self, nets: SplitNets, positions: Tensor | None = None) -> dict[str, float]:
        """Metrics of the current model on ``nets`` (all, or ``positions``), ranks sharing work.

        A task whose metrics need a fit on training nets first (``embed``: the linear probe)
        gets the current model's values on the training sample (:meth:`Task.fit_eval`).
        """
        values = self.collect(nets, positions)
        if self.task.fits_on_train:
            sample = self.sample_positions
            same = nets is self.train_nets and positions is sample
            self.task.fit_eval(values if same else self.collect(self.train_nets, sample))
        return self.task.metrics(values)

    def collect(self, nets: SplitNets, positions: Tensor | None = None) -> dict[str, Tensor]:
        """The task's per-net values of the current model on ``nets``, in ``nets`` order."""
        return collect_values(
            self.task,
            self.model,
            nets,
            batch_size=self.settings.eval_batch_size or self.settings.batch_size,
            device=self.device,
            positions=positions,
            env=self.env,
        )

    def train_epoch(self, epoch: int) -> float:
        """One epoch; returns the mean per-net training loss over all ranks."""
        s, env = self.settings, self.env
        self.model.train()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, net count
        batches = data.epoch_batches(
            len(self.train_nets), s.batch_size, s.seed, epoch, env.world_size
        )
        for step, global_batch in enumerate(batches):
            batch = self.train_nets.batch(data.rank_slice(global_batch, env.rank, env.world_size))
            space = batch.space
            permute = s.permutation_augmentation or self.arch.force_permutation_augmentation
            if permute and space.spec.hidden_widths:
                perm = data.batch_permutation(
                    space.spec.hidden_widths, len(global_batch), s.seed, epoch, step
                )
                space = data.augment(space, perm, env.rank, env.world_size)
            if s.augment is not None and s.augment.active:
                space = augment_batch(
                    space,
                    s.augment,
                    global_size=len(global_batch),
                    seed=s.seed,
                    epoch=epoch,
                    step=step,
                    rank=env.rank,
                    world_size=env.world_size,
                    input_range=input_range(self.zoo.conventions),
                )
            # the task sees the nets as the model does (inr-edit renders its targets from them)
            batch = batch._replace(space=space)
            self.task.start_step(s.seed, epoch, step)
            model_input = self.task.train_input(space, s.seed, epoch, step, env.rank)
            output = self.forward_model(model_input.to(self.device))
            per_net = self.task.loss(output, batch)
            loss = per_net.sum() * (env.world_size / len(global_batch))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            detached = per_net.detach()
            total[0] += detached.sum().double()
            total[1] += len(detached)
            self.reporter.step(
                epoch, step + 1, len(batches), float(detached.mean()), self.current_lr()
            )
        distributed.all_reduce_sum(env, total)  # the same on every rank: all stop together
        mean = float(total[0] / total[1])
        if not math.isfinite(mean):
            raise DwsError(
                f"training diverged in epoch {epoch} (mean loss {mean})",
                hint="lower train.lr or set train.grad_clip",
            )
        return mean

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_val": self.best_val,
            "best_state": self.best_state,
            "history": self.history,
            "elapsed": self.elapsed,
            "world_size": self.env.world_size,
        }

    def save(self) -> None:
        rng = distributed.all_gather_objects(self.env, capture_rng(self.device))  # collective
        if self.env.is_main:
            save_state(self.config.state_path, {**self.state_dict(), "rng": rng})

    def restore(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        score = state["best_score"]
        self.best_score = None if score is None else (float(score[0]), float(score[1]))
        self.best_epoch = int(state["best_epoch"])
        self.best_val = dict(state["best_val"])
        self.best_state = state["best_state"]
        self.history = list(state["history"])
        self.elapsed = float(state["elapsed"])
        rng = state.get("rng") or []
        if int(state.get("world_size", 1)) == self.env.world_size and len(rng) > self.env.rank:
            restore_rng(rng[self.env.rank], self.device)
        else:
            self.reporter.message(
                "resuming with another number of processes: dropout randomness is reseeded"
            )

    def should_stop(self) -> bool:
        patience = self.settings.patience
        return patience is not None and self.epoch - self.best_epoch >= patience

    # ------------------------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        s, config = self.settings, self.config
        resumed_from: int | None = None
        path = config.state_path
        if resume and path.is_file():
            self.restore(load_state(path, config.to_dict()))
            resumed_from = self.epoch
            self.reporter.message(f"resuming {path} after epoch {self.epoch}")
        initial = self.history[0] if self.history else None
        if initial is None:
            self.recalibrate_norms()
            initial = {
                "epoch": 0,
                "val": self.evaluate(self.val_nets),
                "train_sample": self.evaluate(self.train_nets, self.sample_positions),
            }
            self.history.append(initial)
        self.reporter.start(
            {
                "name": config.name,
                "task": self.task.name,
                "epochs": s.epochs,
                "start_epoch": self.epoch,
                "steps_per_epoch": self.steps_per_epoch,
                "nets": {
                    n.name: len(n)
                    for n in (self.train_nets, self.val_nets, self.test_nets, self.heldout_nets)
                    if n is not None
                },
                "device": str(self.device),
                "world_size": self.env.world_size,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "best_metric": self.task.best_metric,
                "initial": initial,
            }
        )
        self.warn_if_grid_and_geometry()
        while self.epoch < s.epochs and not self.should_stop():
            self.run_epoch()
        if self.should_stop() and self.epoch < s.epochs:
            self.reporter.message(
                f"stopped early after epoch {self.epoch}: no better validation "
                f"{self.task.best_metric} since epoch {self.best_epoch}"
            )
        return self.finish(initial, resumed_from)

    def run_epoch(self) -> None:
        s = self.settings
        start = time.monotonic()
        epoch = self.epoch + 1
        record: dict[str, Any] = {"epoch": epoch, "train_loss": self.train_epoch(epoch)}
        record["lr"] = self.current_lr()
        if epoch % s.eval_every == 0 or epoch == s.epochs:
            self.recalibrate_norms()
            val = self.evaluate(self.val_nets)
            # the same metrics on the fixed training sample: a model that does not fit its own
            # training nets shows as such beside its validation score
            record["train"] = self.evaluate(self.train_nets, self.sample_positions)
            live = self.live_head()
            if live is not None:
                record["live_head_units"] = [live[0], live[1]]
            score = self.task.score(val)
            better = self.best_score is None or score > self.best_score
            if better:
                self.best_score, self.best_epoch, self.best_val = score, epoch, val
                self.best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
                }
            record.update(val=val, best=better)
        record.update(best_epoch=self.best_epoch, best_val=self.best_val)
        record["seconds"] = time.monotonic() - start
        self.elapsed += record["seconds"]
        self.epoch = epoch
        self.history.append(record)
        self.save()
        self.reporter.epoch(record)
        self.warn_if_stalled()

    def recalibrate_norms(self) -> None:
        """Running statistics of the batch norms from the current weights, over the fixed
        training sample (see :func:`dwscli.nn.heads.recalibrate_batch_norms`): one forward pass
        over it, in evaluation batches. Every rank does the same work on the same nets, without
        collectives, so the statistics agree."""
        if not self.settings.recalibrate_norms or not net_batch_norms(self.model):
            return
        size = self.settings.eval_batch_size or self.settings.batch_size
        chunks = self.sample_positions.split(size)

        def forward(chunk: Tensor) -> Callable[[], object]:
            def run() -> object:
                space = self.train_nets.batch(chunk).space.to(self.device)
                return self.task.eval_forward(self.model, space)

            return run

        recalibrate_batch_norms(self.model, [forward(c) for c in chunks])

    def live_head(self) -> tuple[int, int] | None:
        """Live units of the invariant head (see :func:`dwscli.nn.heads.live_head_units`) on
        a batch of the training sample; None for models without one."""
        size = self.settings.eval_batch_size or self.settings.batch_size
        positions = self.sample_positions[: max(size, 2)]
        space = self.train_nets.batch(positions).space.to(self.device)
        self.model.eval()
        return live_head_units(self.model, lambda: self.task.eval_forward(self.model, space))

    def warn_if_grid_and_geometry(self) -> None:
        """Warn when probes read only pixel centres but the INRs are rotated, shifted or
        scaled: a transformed INR draws its pixels between the grid's centres, so the probes
        read it where a net fitted only at its pixels may be noise."""
        augment = self.settings.augment
        if not getattr(self.config.model.options, "probe_grid", False):
            return
        if augment is None or not augment.input_space:
            return
        self.reporter.message(
            "warning: model.probe_grid reads each INR at the zoo's pixel centres, but "
            "train.augment rotates, translates or scales the INRs, which moves their image off "
            "those centres; consider turning one of them off"
        )

    def warn_if_stalled(self) -> None:
        """Warn once when the training loss has not moved over the last ``stall_evals``
        validations: a dead model (e.g. a head whose units no longer fire) looks like this."""
        window = self.settings.stall_evals
        if window is None or self.warned_stall:
            return
        losses = [r["train_loss"] for r in self.history if "val" in r and "train_loss" in r]
        if len(losses) <= window:
            return
        recent = losses[-(window + 1) :]
        spread = max(recent) - min(recent)
        if spread > 1e-3 * max(abs(sum(recent) / len(recent)), 1e-8):
            return
        self.warned_stall = True
        live = self.history[-1].get("live_head_units")
        units = f"; live head units {live[0]}/{live[1]}" if live else ""
        self.reporter.message(
            f"warning: the training loss has not moved over the last {window} validations "
            f"({recent[-1]:.4g}){units}: the model may be dead; check train.lr and the "
            "model's head_norm"
        )

    def finish(self, initial: dict[str, Any], resumed_from: int | None) -> TrainResult:
        config = self.config
        if self.best_state is None:  # no validation happened (only possible with 0 epochs)
            self.best_val = self.evaluate(self.val_nets)
        else:
            self.model.load_state_dict(self.best_state)
        test = self.evaluate(self.test_nets)
        train_sample = self.evaluate(self.train_nets, self.sample_positions)
        # "train": the best model on the fixed training sample, so a card (and a comparison
        # table) shows whether the model fits its own training nets
        metrics = {"train": train_sample, "val": self.best_val, "test": test}
        if self.heldout_nets is not None:
            metrics[HELDOUT_SPLIT] = self.evaluate(self.heldout_nets)
        baselines = self.fit_baselines()
        card_path, weights_path = config.processor_path, config.weights_path
        # on every rank, so that a failure stops them all (not rank 0 alone at the barrier)
        check = self.feature_check() if self.settings.ood_features else None
        if self.env.is_main:
            card = self.card(metrics, baselines)
            extra: dict[str, Tensor] = {}
            if check is not None:
                card["ood"]["features"], extra = check
            card_path, weights_path = cards.write_processor(
                config.output, config.name, card, self.model, extra
            )
        distributed.barrier(self.env)
        return TrainResult(
            name=config.name,
            task=self.task.name,
            processor=card_path,
            weights=weights_path,
            metrics=metrics,
            initial={"val": initial["val"], "train_sample": initial["train_sample"]},
            train_sample=train_sample,
            best_epoch=self.best_epoch,
            epochs_run=self.epoch,
            stopped_early=self.should_stop() and self.epoch < self.settings.epochs,
            resumed_from=resumed_from,
            seconds=self.elapsed,
            device=str(self.device),
            world_size=self.env.world_size,
            rank=self.env.rank,
            history=self.history,
            baselines=baselines,
        )

    @torch.no_grad()
    def features(self, nets: SplitNets) -> Tensor:
        """The model's pooled features of (up to 5,000, evenly spaced) nets of a split."""
        from dwscli.processors.ood import MAX_NETS_PER_SPLIT

        embed = pooled_features(self.model)
        assert embed is not None  # checked when the trainer started
        self.model.eval()
        count = len(nets)
        picks = torch.linspace(0, count - 1, min(count, MAX_NETS_PER_SPLIT)).round().long()
        parts = [
            embed(nets.batch(chunk).space.to(self.device)).float().cpu()
            for chunk in picks.unique().split(1024)
        ]
        return torch.cat(parts)

    def feature_check(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The card's ``ood.features`` section and the weights file's tensors for it: the
        subspace fitted on the training nets' features, the threshold calibrated on the
        validation nets', the flagged fraction checked on the test nets'."""
        from dwscli.processors.feature_ood import fitted_feature_check

        chosen = {"where": self.settings.where} if self.settings.where is not None else {}
        train, val = self.features(self.train_nets), self.features(self.val_nets)
        test = self.features(self.test_nets)
        for split, values in (("train", train), ("val", val), ("test", test)):
            bad = int((~values.isfinite().all(1)).sum())
            if bad:
                raise DwsError(
                    f"{self.config.source or self.config.name}: train.ood_features: {bad} "
                    f"{split} nets have non-finite features"
                )
        profile, section = fitted_feature_check(
            train, val, test, self.settings.ood_features, chosen=chosen
        )
        return section, profile.tensors()

    def fit_baselines(self) -> BaselineMetrics:
        """The task's baselines on the same train/test nets, fitted once (on rank 0) and
        shared, so every rank returns the same result."""
        result = self.task.baselines(self.train_nets, self.test_nets) if self.env.is_main else {}
        return distributed.broadcast_object(self.env, result)

    def card(
        self,
        metrics: Mapping[str, Mapping[str, float]],
        baselines: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    ) -> dict[str, Any]:
        config, zoo = self.config, self.zoo
        card_metrics: dict[str, Any] = {
            split: cards.clean_metrics(m) for split, m in metrics.items()
        }
        if baselines:
            card_metrics["baselines"] = {
                name: {split: cards.clean_metrics(m) for split, m in by_split.items()}
                for name, by_split in baselines.items()
            }
        return {
            "name": config.name,
            "version": config.version,
            "task": self.task.name,
            **self.task.card_fields(),
            **({"default_for": config.default_for} if config.default_for else {}),
            "description": config.description,
            "model": {
                "kind": self.task.kind,
                "arch": self.arch.name,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "config": self.arch.card_config(config.model.options, self.task.out_features),
            },
            "output": self.task.describe_output(),
            "input": cards.input_section(zoo),
            "normalization": cards.normalization_section(
                self.model, zoo.spec.depth, len(self.sample_positions), config.train.init_from
            ),
            "ood": cards.ood_section(zoo, config.train.where),
            "training": {
                "zoo": cards.zoo_section(zoo, len(self.train_nets)),
                "config": config.to_dict(),
                "epochs_run": self.epoch,
                "best_epoch": self.best_epoch,
                "selected_on": f"val {self.task.best_metric}",
                "stopped_early": self.should_stop() and self.epoch < self.settings.epochs,
                "seconds": round(self.elapsed, 3),
                "seed": self.settings.seed,
                "world_size": self.env.world_size,
                "device": str(self.device),
                **cards.provenance(),
            },
            "metrics": card_metrics,
        }


def train(
    config: TrainConfig | str | Path,
    *,
    resume: bool = True,
    device: str | None = None,
    reporter: TrainReporter | None = None,
) -> TrainResult:
    """Train a processor as ``config`` (a :class:`TrainConfig` or a YAML path) says.

    ``resume``: continue from ``<output>/<name>.last.pt`` when it exists (the default).
    ``device`` overrides ``train.device`` (auto, cpu or cuda). Under torchrun (``WORLD_SIZE``
    > 1) this joins the process group, trains with DDP and leaves it at the end; only rank 0
    reports and writes files. Returns the same :class:`TrainResult` on every rank.
    """
    config = load_config(config).with_device(device)
    env = distributed.env_from_torchrun()
    target = distributed.resolve_device(config.train.device, env)
    distributed.setup(env, target)
    try:
        trainer = Trainer(config, env, target, reporter if env.is_main else None)
        return trainer.run(resume)
    finally:
        distributed.teardown(env)


__all__ = ["Trainer", "lr_factor", "train"]
