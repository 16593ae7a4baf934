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


@pytest.mark.parametrize("count", [3])
def test_at_most_max_files_are_kept(tmp_path, monkeypatch, count):
    monkeypatch.setattr(cache, "DIRECTORY", str(tmp_path))
    monkeypatch.setattr(cache, "MAX_FILES", count)
    for i in range(count + 4):
        cache.store(f"{i:064x}", {"i": i})
    assert len(kept(tmp_path)) == count
    assert cache.load(f"{count + 3:064x}", ["i"]) == {"i": count + 3}


def test_a_study_at_your_settings_is_kept_on_a_reference_loss_not_on_your_own(tmp_path, monkeypatch):
    """Muon at its defaults has its evidence at your settings on 'factorization' (a reference loss):
    kept. The same loss written by you (another function object) is computed again, since your code
    may change between runs; the numbers agree."""
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
    assert yours.order.errors_corrected == first.order.errors_corrected


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
