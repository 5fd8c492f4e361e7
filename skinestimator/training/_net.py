"""The skorch net: per-sample weighted loss, logit offsets, batch augmentation, test-time flips."""

from __future__ import annotations

import torch
from skorch import NeuralNetClassifier
from torch.utils.data import DataLoader, DistributedSampler

from ._callbacks import drops_last_batch
from ._distributed import average, broadcast_buffers, check_batch_size, wrap

__all__ = ["EpochSampler", "LesionNeuralNet"]


class EpochSampler(DistributedSampler):
    """Shuffles in an order that depends only on ``(seed, epoch)``, one epoch per iteration.

    torch's ``DistributedSampler`` (here also for a single process, ``num_replicas=1``): each
    epoch's order is a function of the seed and the epoch's number, so a run resumed from a
    checkpoint at epoch ``k`` sees the very orders the uninterrupted run saw, with no sampler
    state to save; and under ``torchrun`` each rank reads its own shard of the same order.
    """

    def __init__(self, dataset, *, seed: int, first_epoch: int = 0, num_replicas: int = 1,
                 rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True,
                         seed=seed)
        self.next_epoch = first_epoch

    def __iter__(self):
        self.set_epoch(self.next_epoch)
        self.next_epoch += 1
        return super().__iter__()


class LesionNeuralNet(NeuralNetClassifier):
    """skorch classifier with per-sample weighted loss, augmentation and test-time flips.

    Parameters
    ----------
    *args, **kwargs
        As skorch's ``NeuralNetClassifier``.
    tta : bool, default=False
        Average the predicted probabilities over the four flips.
    augmentation : callable or None, default=None
        Applied to every training batch on the training device (``BatchAugmentation``).
    logit_offset : torch.Tensor or None, default=None
        Added to the logits inside the loss only (logit adjustment); predictions never see it.
    shuffle_seed : int or None, default=None
        Seed of the training order (:class:`EpochSampler`); None: skorch's own shuffling.
    precision : {"32", "bf16", "16-mixed"}, default="32"
        The network's forward pass runs under ``torch.autocast`` in bfloat16 or float16
        (weights, gradients, optimizer and loss stay float32); float16 scales the loss with a
        ``GradScaler`` so that small gradients do not underflow.
    temperature : float, default=1.0
        Predictions (not training) divide the logits by it: the temperature calibration
        ``fit`` measures on the validation split.
    world_size, rank : int, default=1, 0
        Data-parallel training (under ``torchrun``): this net is process ``rank`` of
        ``world_size``. Each reads its shard of every epoch's order, ``batch_size //
        world_size`` images a step, and trains through ``DistributedDataParallel``; after each
        training epoch rank 0's batch-norm statistics are copied to all, so that every rank
        validates (the whole validation set) the same network.
    """

    def __init__(self, *args, tta: bool = False, augmentation=None, logit_offset=None,
                 shuffle_seed: int | None = None, precision: str = "32", world_size: int = 1,
                 rank: int = 0, temperature: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.world_size = world_size
        self.rank = rank
        self.precision = precision
        self.tta = tta
        self.augmentation = augmentation
        self.logit_offset = logit_offset
        self.shuffle_seed = shuffle_seed

    def get_iterator(self, dataset, training=False):
        if not training or (self.shuffle_seed is None and self.world_size == 1):
            return super().get_iterator(dataset, training=training)
        options = self.get_params_for("iterator_train")
        options.setdefault("batch_size", self.batch_size)
        options.pop("shuffle", None)  # the sampler shuffles
        seed = self.shuffle_seed or 0
        sampler = EpochSampler(dataset, seed=seed, first_epoch=len(self.history),
                               num_replicas=self.world_size, rank=self.rank)
        if self.world_size > 1:
            # The global batch is split, so that a step averages the gradients of batch_size
            # images as one process would: rank r's i-th batch holds every world_size-th
            # image of the single-process run's i-th batch.
            options["batch_size"] = check_batch_size(self.batch_size, self.world_size)
            options["drop_last"] = drops_last_batch(len(sampler), options["batch_size"])
        # The loader's own generator draws its workers' base seed, which would otherwise come
        # from the global generator once per persistent loader: a resumed run, with a new
        # loader, would then draw once more and see other augmentations.
        generator = torch.Generator().manual_seed(seed + self.rank)
        return DataLoader(dataset, sampler=sampler, generator=generator, **options)

    def _training_module(self) -> torch.nn.Module:
        """The module training steps run: ``module_``, or under ``torchrun`` its
        ``DistributedDataParallel`` wrapper (created at the first step, on every rank at
        once, as its constructor is collective)."""
        if self.world_size == 1:
            return self.module_
        parallel = self.__dict__.get("_parallel")
        if parallel is None or parallel.module is not self.module_:
            parallel = wrap(self.module_, self.device)
            # Not through skorch's __setattr__, which would register it as a second module to
            # save and move; it holds the process group and must not be pickled either.
            object.__setattr__(self, "_parallel", parallel)
        return parallel

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        if training and iterator is not None and self.world_size > 1:
            moving_average = dict(self.callbacks_).get("ema")
            broadcast_buffers(self.module_, getattr(moving_average, "average_", None))

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_parallel", None)
        return state

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # skorch's fit swallows KeyboardInterrupt (Ctrl+C) to keep the partly trained network;
        # `interrupted_` lets the estimator say so instead of returning as if training had
        # finished. Early stopping ends a run with the same exception; it is no interruption.
        self.interrupted_ = False
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            self.interrupted_ = not any(getattr(callback, "stopped_", False)
                                        for _, callback in self.callbacks_)
            raise
        finally:
            # The DistributedDataParallel wrapper only trains; left alive until the
            # interpreter's end it would outlive the process group it holds.
            self.__dict__.pop("_parallel", None)

    def initialize(self):
        super().initialize()
        # Loss scaling is for float16 only: bfloat16 has float32's exponent range.
        self.scaler_ = None
        if self.precision == "16-mixed":
            self.scaler_ = torch.amp.GradScaler(torch.device(self.device).type)
        return self

    def _forward(self, x: torch.Tensor, module: torch.nn.Module | None = None) -> torch.Tensor:
        """The logits of ``module`` (default ``module_``), under autocast for a reduced
        precision, as float32 (the loss, the softmax and numpy need it)."""
        module = self.module_ if module is None else module
        if self.precision == "32":
            return module(x)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.autocast(torch.device(self.device).type, dtype=dtype):
            return module(x).float()

    def infer(self, x, **fit_params):
        if isinstance(x, dict):
            x = x["images"]
        x = x.to(self.device)
        if self.module_.training:
            # Augment whole batches on the training device (see BatchAugmentation for why).
            if self.augmentation is not None:
                x = self.augmentation(x)
            return self._forward(x, self._training_module())
        # A temperature divides the logits (or, with flips, the log of the averaged
        # probabilities: softmax ignores the constant per row, so the two agree without flips).
        temperature = float(getattr(self, "temperature", 1.0))
        if not self.tta:
            logits = self._forward(x)
            return logits if temperature == 1.0 else logits / temperature
        # Average the probabilities over the four flips; returning their log keeps the
        # softmax that predict_proba applies exact.
        views = (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2))
        probabilities = torch.stack([self._forward(v).softmax(dim=1) for v in views]).mean(0)
        return probabilities.clamp_min(1e-12).log() / temperature

    def train_step_single(self, batch, **fit_params):
        if getattr(self, "scaler_", None) is None:
            return super().train_step_single(batch, **fit_params)
        from skorch.dataset import unpack_data

        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self.scaler_.scale(loss).backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        if getattr(self, "scaler_", None) is None:
            step = super().train_step(batch, **fit_params)
        else:
            # GradScaler's own step: it unscales, skips steps with inf/NaN gradients, and
            # adapts the scale (skorch's closure-based optimizer step cannot do that).
            self.optimizer_.zero_grad()
            step = self.train_step_single(batch, **fit_params)
            self.scaler_.step(self.optimizer_)
            self.scaler_.update()
        if self.world_size > 1:
            # The history records the loss of the whole global batch, the same on every rank.
            step["loss"] = average(step["loss"])
        return step

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if self.logit_offset is not None:
            y_pred = y_pred + self.logit_offset.to(y_pred)
        per_sample = super().get_loss(y_pred, y_true, X=X, training=training)
        if per_sample.ndim == 0:
            return per_sample
        if isinstance(X, dict) and "sample_weight" in X:
            weights = X["sample_weight"].to(per_sample)
            # A weighted mean, like torch's class-weighted cross-entropy: scaling all
            # weights by a constant leaves the loss unchanged.
            return (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)
        return per_sample.mean()
