"""The training probe: its numbers are the analysis's numbers at the same point, its log is
complete, and it measures only every `every` calls."""
import csv
import json

import numpy as np
import pytest

import memless
from memless.engine.corrections import correction_terms
from memless.losses import REFERENCE_LOSSES
from memless.studies import meanings


def test_probe_records_the_channel_strengths_at_the_given_parameters(tmp_path):
    from autograd import grad
    opt = memless.get_optimizer("adamw", weight_decay=0.0)
    probe = memless.Probe(opt, "curvy", lr=1e-3, every=3)
    path = memless.trajectory(opt, "curvy", None, lr=1e-2, steps=9)
    rows = [probe.step(theta) for theta in path]
    assert [r is not None for r in rows] == [True, False, False] * 3 + [True]
    assert [r["step"] for r in probe.records] == [0, 3, 6, 9]
    theta = path[3]
    loss = REFERENCE_LOSSES["curvy"].loss
    terms = correction_terms(opt, loss, theta, lr=1e-3)
    g = grad(loss)
    N = meanings.sharpness_proxy(opt, g, loss)
    gN = grad(N)(theta)
    F = opt.limit_direction(theta, g)
    record = probe.records[1]
    for name, term in terms.items():
        assert record[f"strength:{name}"] == pytest.approx(gN @ term / abs(gN @ F), rel=1e-10)
    assert record["N"] == pytest.approx(N(theta), rel=1e-12)
    total = sum(terms.values())
    assert record["M/F"] == pytest.approx(np.linalg.norm(total) / np.linalg.norm(F), rel=1e-10)
    assert record["regime"] == ("first-order" if record["M/F"] <= 0.2 else "outside")
    assert record["strength:second-moment"] < 0 < record["strength:first-moment"]
    probe.to_csv(tmp_path / "log.csv")
    with open(tmp_path / "log.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    data = json.loads(probe.to_json(str(tmp_path / "log.json")))
    assert data["optimizer"] == "adamw" and len(data["records"]) == 4


def test_probe_takes_matrices_and_bad_input_gets_one_line():
    probe = memless.Probe(memless.get_optimizer("muon", orthogonalize="polar", weight_decay=0.0), "factorization",
                          lr=1e-3, every=1)
    record = probe.step(REFERENCE_LOSSES["factorization"].start)
    assert record["strength:momentum"] > 0                # Muon's declared sign, measured
    with pytest.raises(memless.MemlessError, match="lr"):
        memless.Probe(memless.get_optimizer("adamw"), "curvy", lr=-1.0)


def test_probe_plot_draws_each_channel():
    plt = pytest.importorskip("matplotlib.pyplot", reason="matplotlib is not installed (pip install memless[plot])")
    import memless.plot
    probe = memless.Probe(memless.get_optimizer("adamw"), "curvy", lr=1e-3, every=1)
    for theta in memless.trajectory(memless.get_optimizer("adamw"), "curvy", None, lr=1e-2, steps=3):
        probe.step(theta)
    fig = memless.plot.probe(probe)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "first-moment" in labels and "second-moment" in labels and "total" in labels
    plt.close(fig)


def test_the_probe_takes_what_a_torch_loop_has():
    """The model, model.parameters(), model.named_parameters(), a dict of its tensors, its state_dict and
    a flat vector give the same record, and the model comes back unchanged; print(probe) summarizes."""
    torch = pytest.importorskip("torch")
    from memless.frameworks.torch import flat, objective
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))
    probe = memless.Probe(memless.get_optimizer("adamw"), objective(model, torch.nn.functional.cross_entropy, (x, y)),
                          lr=1e-3, every=1)
    assert repr(probe).endswith("0 steps, 0 records)")
    before = [p.detach().clone() for p in model.parameters()]
    records = [probe.step(given) for given in (model, model.parameters(), model.named_parameters(),
                                               dict(model.named_parameters()), model.state_dict(),
                                               flat(model.parameters()))]
    assert all(r["M/F"] == records[0]["M/F"] and r["strength"] == records[0]["strength"] for r in records)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert f"|M|/|F| = {records[-1]['M/F']:.3g}" in repr(probe) and "6 records" in repr(probe)
