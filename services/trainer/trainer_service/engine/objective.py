"""What training minimizes when images are mixed or labels smoothed, and flip-averaged scoring.

:class:`TrainingModel` wraps the network (uint8 images -> logits) for ``fit`` when a run asks for
MixUp, CutMix, label smoothing or test-time flips. The network itself is what is checkpointed,
exported and loaded, so every saved file stays an image -> logits model. Pure Keras: ``call``
mixes the batch on the accelerator and ``compute_loss``/``compute_metrics`` (the hooks both
backends' train and test steps call) weigh the loss, so it runs on TensorFlow and JAX alike.

Mixing, image by image, in the training step:

- the partner of image ``i`` is image ``B - 1 - i`` of the same shuffled batch (the batch
  reversed, as timm does): no gather, nothing to carry from the call to the loss but the weight;
- MixUp: ``x = lam * x_i + (1 - lam) * x_partner`` with ``lam ~ Beta(alpha, alpha)``, in the
  uint8 scale and rounded (the network standardizes after; rounding moves a pixel by at most
  half a level);
- CutMix: a box of area fraction about ``1 - lam``, ``lam ~ Beta(alpha, alpha)``, centred
  uniformly and clipped to the image, is pasted from the partner; ``lam`` is then the fraction
  of the image's own pixels actually left;
- with both on, an image gets CutMix with probability ``cutmix_prob`` and MixUp otherwise; with
  CutMix alone, ``cutmix_prob`` of the images are cut and the others left as they are.

The loss is ``lam * CE(own label) + (1 - lam) * CE(partner's label)`` on the same logits (two
sparse cross-entropies: no dense label per image is ever built), each label-smoothed in training
only, plus the network's L2 terms. Keras's ``MixUp`` and ``CutMix`` layers are not used: they
mix one-hot labels in the input pipeline, on the host, and draw one permutation per batch.

Metrics (top-1, top-5) count each image's own label. Validation neither mixes nor smooths; with
``tta_flip`` it averages the logits of each image and its mirror
(``model.augment.flip_averaged``).
"""

from __future__ import annotations

import keras
from keras import ops

from trainer_service.model.augment import flip_averaged
from trainer_service.model.blocks import PACKAGE


def smoothed_cross_entropy(labels, logits, smoothing: float):
    """Per-example cross-entropy of sparse ``labels`` against label-smoothed targets
    ``(1 - smoothing) * one_hot + smoothing / classes``."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    picked = ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1)[:, 0]
    if not smoothing:
        return -picked
    return -(1.0 - smoothing) * picked - smoothing * ops.mean(log_probs, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TrainingModel(keras.Model):
    """``network`` trained with mixed images, smoothed labels and/or flip-averaged validation.

    Called on uint8 images it returns ``(logits, lam)``: ``lam`` [B] is the weight of each
    image's own label (1 where nothing was mixed, and always in validation).
    """

    def __init__(
        self,
        network: keras.Model,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutmix_prob: float = 0.5,
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network = network
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.cutmix_prob = float(cutmix_prob)
        self.label_smoothing = float(label_smoothing)
        self.tta_flip = bool(tta_flip)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    @property
    def mixing(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def call(self, images, training=False):
        batch = ops.shape(images)[0]
        if training and self.mixing:
            images, lam = self.mix(images)
            return self.network(images, training=True), lam
        if training or not self.tta_flip:
            logits = self.network(images, training=training)
        else:
            logits = flip_averaged(self.network, images)
        return logits, ops.ones((batch,), "float32")

    def mix(self, images):
        """(mixed uint8 images, the weight of each image's own label)."""
        shape = ops.shape(images)
        batch, height, width = shape[0], images.shape[-3], images.shape[-2]
        seed = self._seed_generator
        x = ops.cast(images, "float32")
        partner = ops.flip(x, axis=0)
        ones = ops.ones((batch,), "float32")
        if self.cutmix_alpha > 0:
            use_cut = keras.random.uniform((batch,), seed=seed) < self.cutmix_prob
        else:
            use_cut = ops.zeros((batch,), "bool")
        use_mix = ops.logical_not(use_cut) if self.mixup_alpha > 0 else ops.zeros((batch,), "bool")
        lam = ones
        mixed = x
        if self.mixup_alpha > 0:
            lam_mix = keras.random.beta((batch,), self.mixup_alpha, self.mixup_alpha, seed=seed)
            weight = ops.reshape(lam_mix, (-1, 1, 1, 1))
            blended = ops.round(weight * x + (1.0 - weight) * partner)
            mixed = ops.where(ops.reshape(use_mix, (-1, 1, 1, 1)), blended, mixed)
            lam = ops.where(use_mix, lam_mix, lam)
        if self.cutmix_alpha > 0:
            lam_cut = keras.random.beta((batch,), self.cutmix_alpha, self.cutmix_alpha, seed=seed)
            box, kept = self._box(lam_cut, batch, height, width)
            inside = ops.logical_and(ops.reshape(use_cut, (-1, 1, 1, 1)), box)
            mixed = ops.where(inside, partner, mixed)
            lam = ops.where(use_cut, kept, lam)
        return ops.cast(ops.clip(mixed, 0.0, 255.0), images.dtype), lam

    def _box(self, lam, batch, height, width):
        """Per image, a box of area fraction about ``1 - lam`` at a uniform centre, clipped:
        (mask [B, H, W, 1], the fraction of pixels outside it)."""
        seed = self._seed_generator
        side = ops.sqrt(1.0 - lam)
        centre_y = keras.random.uniform((batch,), seed=seed) * height
        centre_x = keras.random.uniform((batch,), seed=seed) * width
        y0 = ops.clip(ops.round(centre_y - side * height / 2), 0, height)
        y1 = ops.clip(ops.round(centre_y + side * height / 2), 0, height)
        x0 = ops.clip(ops.round(centre_x - side * width / 2), 0, width)
        x1 = ops.clip(ops.round(centre_x + side * width / 2), 0, width)
        rows = ops.reshape(ops.arange(height, dtype="float32"), (1, -1, 1, 1))
        cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, -1, 1))

        def edge(v):
            return ops.reshape(v, (-1, 1, 1, 1))

        in_rows = ops.logical_and(rows >= edge(y0), rows < edge(y1))
        in_cols = ops.logical_and(cols >= edge(x0), cols < edge(x1))
        kept = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
        return ops.logical_and(in_rows, in_cols), kept

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits, lam = y_pred
        labels = ops.cast(ops.reshape(y, (-1,)), "int32")
        smoothing = self.label_smoothing if training else 0.0
        per_image = smoothed_cross_entropy(labels, logits, smoothing)
        if training and self.mixing:
            partner = smoothed_cross_entropy(ops.flip(labels, axis=0), logits, smoothing)
            per_image = lam * per_image + (1.0 - lam) * partner
        loss = ops.mean(per_image)
        for extra in self.losses:  # the network's L2 terms
            loss = loss + ops.sum(ops.cast(extra, "float32"))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred[0], sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "mixup_alpha": self.mixup_alpha,
            "cutmix_alpha": self.cutmix_alpha,
            "cutmix_prob": self.cutmix_prob,
            "label_smoothing": self.label_smoothing,
            "tta_flip": self.tta_flip,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        return cls(network, **config)
