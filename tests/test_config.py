"""Presets and overrides: the paper's values in `base`, clear errors for unknown options."""

import dataclasses

import pytest

from mhubert.config import (
    apply_overrides,
    from_dict,
    iteration_schedule,
    iteration_train_overrides,
    load_preset,
)
from mhubert.errors import BadInput


@dataclasses.dataclass
class _Cfg:
    lr: float = 1e-3
    steps: int = 10
    name: str = "x"
    flag: bool = False
    betas: tuple = (0.9, 0.98)


def test_base_preset_holds_the_paper_values():
    base = load_preset("base")
    assert base["train"]["lr"] == 5e-4
    assert base["train"]["warmup_updates"] == 32000
    assert base["data"]["max_tokens"] == 2_800_000
    assert base["data"]["alpha"] == 0.7 and base["data"]["beta"] == 0.9
    assert base["clustering"]["index_factory"] == "OPQ16_64,IVF1000_HNSW32,PQ16x4fsr"
    assert [it["layer"] for it in base["iterations"]] == [0, 6, 9]
    assert [it["label_rate"] for it in base["iterations"]] == [100, 50, 50]
    assert {it["num_clusters"] for it in base["iterations"]} == {1000}


def test_overrides_are_typed():
    cfg = apply_overrides(_Cfg(), ["lr=0.5", "steps=3", "flag=true", "name=abc"])
    assert cfg == _Cfg(lr=0.5, steps=3, name="abc", flag=True)
    assert apply_overrides(_Cfg(), {"lr": 1}).lr == 1.0
    # exponents without a dot are strings to YAML 1.1, numbers to anyone writing --set train.lr=1e-9
    assert apply_overrides(_Cfg(), ["lr=1e-9"]).lr == 1e-9
    assert apply_overrides(_Cfg(), ["lr=2E3"]).lr == 2000.0


@pytest.mark.parametrize("bad", [["nope=1"], ["lr"], ["flag=maybe"], ["lr=fast"]])
def test_bad_overrides_name_the_problem(bad):
    with pytest.raises(BadInput):
        apply_overrides(_Cfg(), bad)


def test_unknown_key_in_dict():
    with pytest.raises(BadInput, match="unknown"):
        from_dict(_Cfg, {"lr": 1.0, "typo": 2})


def test_iteration_schedules():
    base = iteration_schedule("base")
    assert not any(it.get("warm_start") or it.get("train") for it in base)  # the paper: from scratch
    tiny = iteration_schedule("tiny")
    assert [it["layer"] for it in tiny] == [0, 3, 4]
    assert [bool(it.get("warm_start")) for it in tiny] == [False, True, True]


@pytest.mark.parametrize("entry,message", [
    ({"features": "mfcc", "layer": 0, "label_rate": 100, "num_clusters": 9, "typo": 1}, "unknown keys"),
    ({"features": "mfcc", "layer": 0, "label_rate": 100, "num_clusters": 9, "train": "lr=1"}, "key=value"),
    ({"features": "mfcc", "layer": 0, "label_rate": 100, "num_clusters": 9, "warm_start": "yes"},
     "warm_start"),
])
def test_bad_iteration_schedule_is_named(tmp_path, entry, message):
    import yaml

    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"iterations": [entry] * 3}))
    with pytest.raises(BadInput, match=message):
        iteration_schedule(str(p))


def test_iteration_train_overrides_put_the_callers_last():
    assert iteration_train_overrides("tiny", 1, ["train.lr=1"]) == ["train.lr=1"]
    got = iteration_train_overrides("tiny", 2, ["train.max_update=7"])
    assert got == ["train.max_update=1200", "train.warmup_updates=40", "train.max_update=7"]
    assert iteration_train_overrides("base", 3) == []
    # the trainer applies overrides in order, so the caller's value is the one that holds
    from mhubert.train.config import TrainConfig

    assert apply_overrides(TrainConfig(), ["max_update=1200", "max_update=7"]).max_update == 7
    with pytest.raises(BadInput, match="iteration"):
        iteration_train_overrides("tiny", 4)


def test_one_override_parser_routes_and_names_problems():
    from dataclasses import dataclass

    from mhubert.config import route_overrides

    @dataclass
    class A:
        lr: float = 1.0
        seed: int = 0

    @dataclass
    class B:
        seed: int = 0
        k: int = 3

    secs = {"train": A, "clustering": B}
    assert route_overrides(["lr=2", "clustering.seed=4", "k=5"], secs) == {
        "train": ["lr=2"], "clustering": ["seed=4", "k=5"]}
    with pytest.raises(BadInput, match="ambiguous, it is in clustering, train"):
        route_overrides(["seed=1"], secs)
    with pytest.raises(BadInput, match="unknown section 'model'"):
        route_overrides(["model.x=1"], secs)
    with pytest.raises(BadInput, match="train has no option 'max_updates'"):
        route_overrides(["train.max_updates=5"], secs)


def test_bad_preset_and_bad_number_are_named():
    from mhubert.config import from_preset, load_preset
    from mhubert.train.config import TrainConfig

    with pytest.raises(BadInput, match="unknown preset 'tinny': use base | tiny"):
        load_preset("tinny")
    with pytest.raises(BadInput, match="max_update must be a number, got 'abc'"):
        from_preset(TrainConfig, "train", "tiny", ["max_update=abc"])
