# %% [markdown]
# # Tutorial 4 — A beta2 sweep on a small learning problem
#
# Seed 000 (Section 4) reports that AdamW generalizes better as beta2 is lowered
# toward beta1, and that Lion, whose memory adds no anti-regularization,
# generalizes better still. Here we look on a problem small enough to run in
# seconds: a 2-16-2 tanh MLP on seeded two-moons data with a train/test split,
# trained full-batch. We report, for AdamW at several beta2 and for Lion:
#
# * memless's **prediction**: the net effect of the optimizer's memory on the
#   sharpness proxy `N = ||grad L||_{1,eps}` at the end of training;
# * the **measurements**: `N` at the end, and the test accuracy.
#
# Whatever the outcome, it is printed as it is: a small problem need not show a
# paper's effect.

# %%
import numpy as np
import autograd.numpy as anp
from autograd import grad

import memless
from memless import teaching


def two_moons(samples, noise, rng):
    t = rng.uniform(0, np.pi, size=samples)
    label = rng.integers(0, 2, size=samples)
    x = np.where(label == 0, np.cos(t), 1 - np.cos(t))
    y = np.where(label == 0, np.sin(t), 0.5 - np.sin(t))
    return np.stack([x, y], axis=1) + noise * rng.normal(size=(samples, 2)), label


rng = np.random.default_rng(0)
X_train, y_train = two_moons(200, 0.25, rng)
X_test, y_test = two_moons(1000, 0.25, rng)
SIZES = [(2, 16), (16, 2)]
CUTS = np.cumsum([0] + [(a + 1) * b for a, b in SIZES])


def logits(theta, X):
    h = X
    for i, (a, b) in enumerate(SIZES):
        layer = theta[CUTS[i]:CUTS[i + 1]]
        h = anp.dot(h, anp.reshape(layer[: a * b], (a, b))) + layer[a * b:]
        if i < len(SIZES) - 1:
            h = anp.tanh(h)
    return h


def train_loss(theta):
    z = logits(theta, X_train)
    z = z - anp.max(z, axis=1, keepdims=True)
    log_p = z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))
    return -anp.mean(log_p[np.arange(len(y_train)), y_train])


def test_accuracy(theta):
    return float(np.mean(np.argmax(logits(theta, X_test), axis=1) == y_test))


theta0 = np.concatenate([np.concatenate([rng.normal(scale=1 / np.sqrt(a), size=a * b), np.zeros(b)])
                         for a, b in SIZES])
EPS = 1e-8


def sharpness(theta):
    return float(np.sum(np.sqrt(grad(train_loss)(theta) ** 2 + EPS)))


def predicted_effect(optimizer, theta, lr):
    """Sign of <grad N, M> at theta, relative to <grad N, F>: the memory's net push on N."""
    N = lambda t: anp.sum(anp.sqrt(grad(train_loss)(t) ** 2 + EPS))
    dN = grad(N)(theta)
    M = memless.correction(optimizer, train_loss, theta, lr=lr)
    F = optimizer.limit_direction(theta, grad(train_loss))
    strength = float(dN @ M) / max(abs(float(dN @ F)), 1e-300)
    if abs(strength) < 1e-6:
        return "none", strength
    return ("regularizing" if strength > 0 else "anti-regularizing"), strength


# %% [markdown]
# ## Train and measure

# %%
LR, STEPS = 1e-2, 1500
runs = {f"adamw beta2={b2}": memless.get_optimizer("adamw", beta1=0.9, beta2=b2, eps=EPS, weight_decay=0.0)
        for b2 in (0.8, 0.99, 0.999)}
runs["lion"] = memless.get_optimizer("lion", eps=EPS)
results = {}
for name, opt in runs.items():
    lr = LR / 10 if name == "lion" else LR           # Lion's sign steps are larger: the usual 3-10x smaller lr
    theta = memless.trajectory(opt, train_loss, theta0, lr=lr, steps=STEPS)[-1]
    effect, strength = predicted_effect(opt, theta, lr)
    results[name] = dict(effect=effect, strength=strength, N=sharpness(theta),
                         train=float(train_loss(theta)), accuracy=test_accuracy(theta))
    r = results[name]
    print(f"{name:18s} predicted {r['effect']:17s} ({r['strength']:+.2e})  ||grad L||_1 = {r['N']:.3e}  "
          f"train loss {r['train']:.4f}  test accuracy {r['accuracy']:.3f}")

# %% [markdown]
# ## What the prediction says, and whether the measurements agree

# %%
# the prediction follows the weights beta1/(1-beta1) = 9 against beta2/(1-beta2)
assert results["adamw beta2=0.8"]["effect"] == "regularizing"            # 9 > 4
assert results["adamw beta2=0.99"]["effect"] == "anti-regularizing"      # 9 < 99
assert results["adamw beta2=0.999"]["effect"] == "anti-regularizing"     # 9 < 999
assert results["lion"]["effect"] != "anti-regularizing"                  # Lion's memory never rewards N
assert all(r["accuracy"] > 0.75 for r in results.values()), "every run learned the task"

order_N = sorted(results, key=lambda k: results[k]["N"])
order_acc = sorted(results, key=lambda k: -results[k]["accuracy"])
print("smallest ||grad L||_1 first:", order_N)
print("best test accuracy first:   ", order_acc)
adamw = [k for k in results if k.startswith("adamw")]
agrees = results[adamw[0]]["N"] <= results[adamw[-1]]["N"]
print("lower beta2 ended flatter (smaller ||grad L||_1) than beta2 = 0.999:", "yes" if agrees else "no")
print("Read with care: end-of-training gradient norms mix the implicit bias with how far each run got.")
print("And the strengths are huge: at the end many gradient entries are near sqrt(eps), where the")
print("smooth sign's curvature is 1/sqrt(eps). Lion's term is O(eps) only where eps << g^2; near a")
print("minimum it is not, and the first-order theory is far outside its range (|M| >> |F|).")
print("The signs are what to read.")

# %%
plt = teaching.pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    names = list(results)
    ax.bar(range(len(names)), [results[n]["accuracy"] for n in names])
    ax.set_xticks(range(len(names)), [n.replace(" ", "\n") for n in names])   # one word a line: no overlap
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("test accuracy")
    fig.tight_layout()
    teaching.savefig(fig, "04_beta2_sweep")
