"""Tamed studies kept on disk between command-line runs (memless.studies.cache): the same output
with and without the cache, keys that change with everything the study depends on, corrupt and
foreign files ignored, nothing written with --no-cache or from the Python API by default."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import memless
from memless.studies import analysis, cache

#: a hang guard, not a speed test
HANG_GUARD = 900


def report(folder, *extra, **env):
    environment = dict(os.environ, MEMLESS_CACHE_DIR=str(folder), COLUMNS="100", **env)
    run = subprocess.run([sys.executable, "-m", "memless", "report", "lion", "--no-color", "--quiet", *extra],
                         capture_output=True, text=True, env=environment, timeout=HANG_GUARD)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def kept(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith(".json")) if os.path.isdir(folder) else []


def test_the_second_report_reuses_the_tamed_study_and_prints_the_same(tmp_path):
    fresh = report(tmp_path / "none", "--no-cache")
    assert kept(tmp_path / "none") == []
    first = report(tmp_path / "kept")
    files = kept(tmp_path / "kept")
    assert len(files) == 1
    data = json.loads((tmp_path / "kept" / files[0]).read_text())
    assert data["key"] == files[0][:-5] and data["value"]["setting"] == "tamed"
    assert report(tmp_path / "kept") == first == fresh
    assert "tamed" in first


def test_a_corrupt_or_foreign_file_is_ignored_and_replaced(tmp_path):
    first = report(tmp_path)
    (name,) = kept(tmp_path)
    path = tmp_path / name
    good = path.read_text()
    path.write_text(good[: len(good) // 2])                       # truncated
    assert report(tmp_path) == first and json.loads(path.read_text())["key"] == name[:-5]
    data = json.loads(good)
    del data["value"]["lrs"]                                       # a field missing: another version's file
    path.write_text(json.dumps(data))
    assert report(tmp_path) == first and "lrs" in json.loads(path.read_text())["value"]
    data = json.loads(good)
    data["key"] = "0" * 64                                         # a file under the wrong name
    path.write_text(json.dumps(data))
    assert report(tmp_path) == first and json.loads(path.read_text())["key"] == name[:-5]


def test_nothing_is_written_when_turned_off(tmp_path):
    report(tmp_path / "a", "--no-cache")
    report(tmp_path / "b", MEMLESS_NO_CACHE="1")
    assert kept(tmp_path / "a") == kept(tmp_path / "b") == []
    report(tmp_path / "c", MEMLESS_NO_CACHE="0")
    assert len(kept(tmp_path / "c")) == 1


def test_an_unwritable_cache_costs_time_not_the_report(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert report(blocker / "cache") == report(tmp_path / "ok", "--no-cache")


def test_the_python_api_writes_nothing_by_default_and_a_kept_study_is_the_computed_one(tmp_path, monkeypatch):
    assert cache.DIRECTORY is None
    options = dict(steps=60, points=2, evidence_losses=())
    monkeypatch.setattr(analysis, "_TAMED_STUDIES", {})
    computed = memless.analyze(memless.get_optimizer("lion"), **options)
    monkeypatch.setattr(cache, "DIRECTORY", str(tmp_path))
    monkeypatch.setattr(analysis, "_TAMED_STUDIES", {})
    written = memless.analyze(memless.get_optimizer("lion"), **options)
    assert len(kept(tmp_path)) == 1
    monkeypatch.setattr(analysis, "_TAMED_STUDIES", {})
    read = memless.analyze(memless.get_optimizer("lion"), **options)
    assert computed.order.setting == "tamed"
    assert computed.to_json() == written.to_json() == read.to_json()


def test_keys_follow_everything_the_study_depends_on():
    lion = memless.get_optimizer("lion").tamed()
    assert cache.key(lion, "x") == cache.key(memless.get_optimizer("lion").tamed(), "x")
    assert cache.key(lion, "x") != cache.key(lion, "y")
    assert cache.key(lion, "x") != cache.key(memless.get_optimizer("lion", k="logcosh").tamed(), "x")
    assert cache.key(lion, "x") != cache.key(memless.get_optimizer("adamw").tamed(), "x")

    with_array = memless.get_optimizer("heavy-ball").tamed()
    with_array.scale = np.array([1.0, 2.0])
    other_array = memless.get_optimizer("heavy-ball").tamed()
    other_array.scale = np.array([1.0, 2.5])
    assert None not in (cache.key(with_array, "x"), cache.key(other_array, "x"))
    assert cache.key(with_array, "x") != cache.key(other_array, "x")
    unkeyable = memless.get_optimizer("heavy-ball").tamed()
    unkeyable.hook = lambda x: x                   # a value without a canonical text: not kept
    assert cache.key(unkeyable, "x") is None

    class Plugin(memless.optimizers.HeavyBall):  # a class outside memless: its code may change, not kept
        pass

    assert cache.key(Plugin(), "x") is None


def test_the_default_folder_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MEMLESS_CACHE_DIR", "/some/where")
    assert cache.default_directory() == "/some/where"
    monkeypatch.delenv("MEMLESS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert cache.default_directory() == os.path.join("/xdg", "memless")
    monkeypatch.setenv("MEMLESS_NO_CACHE", "yes")
    assert cache.default_directory() is None


def test_pruning_keeps_at_most_max_files_and_touches_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "DIRECTORY", str(tmp_path))
    monkeypatch.setattr(cache, "MAX_FILES", 3)
    mine = [tmp_path / f"results_{i}.json" for i in range(5)] + [tmp_path / "notes.txt"]
    for path in mine:
        path.write_text("the user's own")
    for i in range(7):
        cache.store(f"{i:064x}", {"i": i})
    assert len(kept(tmp_path)) == 3 + 5 and all(path.read_text() == "the user's own" for path in mine)
    assert cache.load(f"{6:064x}", {"i": "number"}) == {"i": 6}
    stale = tmp_path / f".{0:064x}.json.abc.tmp"
    stale.write_text("left by a stopped process")
    os.utime(stale, (0, 0))
    cache.store(f"{7:064x}", {"i": 7})
    assert not stale.exists()


def test_a_study_at_your_settings_is_kept_on_a_reference_loss_not_on_your_own(tmp_path, monkeypatch):
    """Muon at its defaults has its evidence at your settings on 'factorization' (a reference loss):
    kept. The same loss written by you (another function object) is computed again, since your code
    may change between runs; the numbers agree (to rounding: the reference loss's derivatives are
    written by hand, yours are autograd's)."""
    from memless.losses import REFERENCE_LOSSES
    monkeypatch.setattr(cache, "DIRECTORY", str(tmp_path))
    monkeypatch.setattr(analysis, "_TAMED_STUDIES", {})
    opt, options = memless.get_optimizer("heavy-ball", beta=0.5), dict(steps=60, points=2, evidence_losses=())
    first = memless.analyze(opt, loss="curvy", lr=0.01, **options)
    assert first.order.setting == "yours" and len(kept(tmp_path)) == 1
    again = memless.analyze(opt, loss="curvy", lr=0.01, **options)
    assert again.to_json() == first.to_json() and len(kept(tmp_path)) == 1
    reference = REFERENCE_LOSSES["curvy"]

    def curvy(theta):                              # yours: the same function, another object
        return reference.loss(theta)

    yours = memless.analyze(opt, loss=curvy, theta=reference.start, lr=0.01, **options)
    assert len(kept(tmp_path)) == 1
    np.testing.assert_allclose(yours.order.errors_corrected, first.order.errors_corrected, rtol=1e-8)


def test_the_modified_equations_check_is_kept_too(tmp_path):
    def modified(*extra):
        environment = dict(os.environ, MEMLESS_CACHE_DIR=str(tmp_path), COLUMNS="100")
        run = subprocess.run([sys.executable, "-m", "memless", "modified", "adamw", "--no-color", *extra],
                             capture_output=True, text=True, env=environment, timeout=HANG_GUARD)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout

    fresh = modified("--no-cache")
    assert kept(tmp_path) == []
    assert modified() == fresh and len(kept(tmp_path)) == 1
    assert modified() == fresh and "tamed" in fresh


@pytest.mark.parametrize("tamper", [
    lambda v: v.update(horizon="0.3"), lambda v: v.update(lrs=0.01), lambda v: v.update(errors_corrected=1.0),
    lambda v: v.update(corrected="2"), lambda v: v.update(corrected=None, exact_corrected=False),
    lambda v: v.update(exact_corrected="no"), lambda v: v.update(corrected=True), lambda v: v.update(lrs=[]),
    lambda v: v.update(setting="elsewhere"), lambda v: v.update(errors_uncorrected=v["errors_uncorrected"][:1])])
def test_a_file_of_the_wrong_kinds_is_computed_again_and_replaced(tmp_path, tamper):
    """Valid JSON whose values are not of their kinds (or not consistent: one error per lr) is not
    trusted: the report is the one computed without the cache, and the file is written over."""
    first = report(tmp_path)
    (name,) = kept(tmp_path)
    data = json.loads((tmp_path / name).read_text())
    tamper(data["value"])
    (tmp_path / name).write_text(json.dumps(data))
    assert report(tmp_path) == first
    assert json.loads((tmp_path / name).read_text())["value"] != data["value"]


def test_a_link_or_a_fifo_in_the_folder_is_neither_followed_nor_waited_on(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "DIRECTORY", str(tmp_path / "cache"))
    os.makedirs(tmp_path / "cache")
    victim = tmp_path / "notes.txt"
    victim.write_text("the user's notes")
    key = f"{1:064x}"
    os.symlink(victim, tmp_path / "cache" / f"{key}.json")
    assert cache.load(key, {"i": "number"}) is None
    cache.store(key, {"i": 1})
    assert victim.read_text() == "the user's notes"                    # the link was replaced, not followed
    assert not os.path.islink(tmp_path / "cache" / f"{key}.json")
    assert cache.load(key, {"i": "number"}) == {"i": 1}
    fifo = f"{2:064x}"
    os.mkfifo(tmp_path / "cache" / f"{fifo}.json")
    assert cache.load(fifo, {"i": "number"}) is None                    # returns at once: not a regular file
    big = f"{3:064x}"
    (tmp_path / "cache" / f"{big}.json").write_bytes(b" " * (cache.MAX_FILE_BYTES + 10))
    assert cache.load(big, {"i": "number"}) is None


def test_the_digest_has_scipy_and_the_environment_is_read_as_documented(monkeypatch):
    import scipy
    before = cache.code_digest()
    monkeypatch.setattr(scipy, "__version__", "0.0-another")
    assert cache.code_digest() != before
    for value, on in (("false", True), ("0", True), ("no", True), ("1", False), ("yes", False)):
        monkeypatch.setenv("MEMLESS_NO_CACHE", value)
        assert (cache.default_directory() is not None) is on, value
    monkeypatch.delenv("MEMLESS_NO_CACHE")
    monkeypatch.delenv("MEMLESS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")                # not absolute: ignored (XDG)
    assert cache.default_directory() == os.path.join(os.path.expanduser("~"), ".cache", "memless")
    monkeypatch.setenv("MEMLESS_CACHE_DIR", "~/somewhere")
    assert cache.default_directory() == os.path.join(os.path.expanduser("~"), "somewhere")
