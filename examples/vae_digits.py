"""A variational autoencoder on scikit-learn's handwritten digits (8x8 images).

    pip install -e ".[examples]" && python examples/vae_digits.py

The encoder, the decoder and the VAE holding both are plain nnx Modules. The
reparameterization noise comes from an `nnx.Context` stream (`ctx.make_rng("noise")`),
and the KL term is captured as an `nnx.Intermediate` attribute during the forward
pass, then read and popped by the loss (the NNX README's "capturing intermediate
values"). Training uses the lifted transforms: an `nnx.jit` step around
`nnx.value_and_grad` and an optax Adam update written back with `update_state`.
Prints the loss as it goes down, the test ELBO against a no-latent baseline, and
digits decoded from samples of the prior, as ASCII art.
"""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnx

LATENT = 8


class Encoder(nnx.Module):
    def __init__(self, din: int, dhidden: int, dlatent: int, *, ctx: nnx.Context) -> None:
        self.hidden = nnx.Linear(din, dhidden, ctx=ctx)
        self.mean = nnx.Linear(dhidden, dlatent, ctx=ctx)
        self.logvar = nnx.Linear(dhidden, dlatent, ctx=ctx)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nnx.relu(self.hidden(x))
        return self.mean(h), self.logvar(h)


class Decoder(nnx.Module):
    def __init__(self, dlatent: int, dhidden: int, dout: int, *, ctx: nnx.Context) -> None:
        self.hidden = nnx.Linear(dlatent, dhidden, ctx=ctx)
        self.out = nnx.Linear(dhidden, dout, ctx=ctx)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(z)))  # pixel logits


class VAE(nnx.Module):
    def __init__(self, din: int, dhidden: int, dlatent: int, *, ctx: nnx.Context) -> None:
        self.encoder = Encoder(din, dhidden, dlatent, ctx=ctx)
        self.decoder = Decoder(dlatent, dhidden, din, ctx=ctx)

    def __call__(self, x: jax.Array, *, ctx: nnx.Context) -> jax.Array:
        mean, logvar = self.encoder(x)
        # KL(q(z|x) || N(0, I)) per example, kept as an intermediate value
        kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)
        self.kl_loss = nnx.Intermediate(kl)
        # reparameterization: z = mean + sigma * eps, eps from the "noise" stream
        eps = jax.random.normal(ctx.make_rng("noise"), mean.shape)
        return self.decoder(mean + jnp.exp(0.5 * logvar) * eps)

    def reconstruct(self, x: jax.Array) -> jax.Array:
        mean, _ = self.encoder(x)
        return self.decoder(mean)


def bce(logits: jax.Array, x: jax.Array) -> jax.Array:
    """Bernoulli negative log-likelihood of pixel intensities in [0, 1], per example."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1)


def negative_elbo(model: VAE, x: jax.Array, *, ctx: nnx.Context) -> tuple[jax.Array, jax.Array]:
    logits = model(x, ctx=ctx)
    kl = model.pop_state(nnx.Intermediate)[("kl_loss",)].value  # read and remove
    rec = bce(logits, x)
    return jnp.mean(rec + kl), jnp.mean(rec)


def ascii_rows(images: NDArray[np.float32]) -> list[str]:
    shades = " .:-=+*#%@"
    rows: list[str] = []
    for r in range(8):
        cells = [
            "".join(shades[int(v * 9.99)] * 2 for v in img[r * 8 : r * 8 + 8]) for img in images
        ]
        rows.append("   ".join(cells).rstrip())
    return rows


def load_data() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The digits' pixels in [0, 1] as (x_train, x_test). scikit-learn has no type
    annotations: its results are given their types here, so none of it leaks out."""
    data, target = cast(
        "tuple[NDArray[np.float64], NDArray[np.int64]]", load_digits(return_X_y=True)
    )
    x = (data / 16.0).astype(np.float32)
    x_train, x_test = cast(
        "list[NDArray[Any]]", train_test_split(x, test_size=0.25, random_state=0, stratify=target)
    )
    return x_train, x_test


def main() -> None:
    x_train, x_test = load_data()

    model = VAE(64, 128, LATENT, ctx=nnx.context(0))
    tx = optax.adam(2e-3)
    opt_state = tx.init(model.filter(nnx.Param))

    @nnx.jit
    def train_step(
        model: VAE, opt_state: optax.OptState, x: jax.Array, *, ctx: nnx.Context
    ) -> tuple[jax.Array, optax.OptState]:
        grad_fn = nnx.value_and_grad(negative_elbo, has_aux=True)
        (loss, _), grads = grad_fn(model, x, ctx=ctx)
        params = model.filter(nnx.Param)
        updates, opt_state = tx.update(grads, opt_state, params)
        model.update_state(optax.apply_updates(params, updates))  # written back by nnx.jit
        return loss, opt_state

    evaluate = nnx.jit(negative_elbo)

    rng = np.random.default_rng(0)
    key = jax.random.key(1)
    batch, steps_per_epoch, epochs = 64, len(x_train) // 64, 60
    losses: list[float] = []
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        for i in range(steps_per_epoch):
            key, noise = jax.random.split(key)  # a fresh noise key for each step
            x_batch = jnp.asarray(x_train[order[i * batch : (i + 1) * batch]])
            loss, opt_state = train_step(model, opt_state, x_batch, ctx=nnx.context(noise=noise))
            losses.append(float(loss))
        if epoch % 10 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}  -ELBO {np.mean(losses[-steps_per_epoch:]):7.2f} nats")

    test_nelbo, test_rec = evaluate(model, jnp.asarray(x_test), ctx=nnx.context(noise=2))
    # a model without a latent code: every pixel Bernoulli with the training-set mean
    p: NDArray[np.float32] = x_train.mean(axis=0).clip(1e-4, 1 - 1e-4)
    baseline_logits = jnp.log(p / (1 - p)) * jnp.ones_like(x_test)
    baseline = float(jnp.mean(bce(baseline_logits, jnp.asarray(x_test))))
    recon = np.asarray(jax.nn.sigmoid(model.reconstruct(jnp.asarray(x_test))))
    mse, baseline_mse = np.mean((recon - x_test) ** 2), np.mean((p - x_test) ** 2)
    print(f"test -ELBO: {float(test_nelbo):.2f} nats (reconstruction term {float(test_rec):.2f});")
    print(f"  the mean-image model: {baseline:.2f} nats")
    print(f"test reconstruction MSE per pixel: {mse:.4f} (the mean image: {baseline_mse:.4f})")

    z = jax.random.normal(jax.random.key(3), (6, LATENT))  # samples of the prior N(0, I)
    samples = np.asarray(jax.nn.sigmoid(model.decoder(z)))
    print("digits decoded from the prior:")
    print("\n".join(ascii_rows(samples)))

    first, last = np.mean(losses[:steps_per_epoch]), np.mean(losses[-steps_per_epoch:])
    assert last < 0.75 * first, (first, last)
    assert float(test_nelbo) < baseline, (float(test_nelbo), baseline)
    assert mse < 0.5 * baseline_mse, (mse, baseline_mse)
    assert "kl_loss" not in vars(model)  # popped inside the jitted step, written back
    assert samples.shape == (6, 64) and 0.05 < samples.mean() < 0.6


if __name__ == "__main__":
    main()
