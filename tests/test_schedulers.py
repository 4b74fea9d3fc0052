"""Learning-rate schedules (SPEC §3.7, §6.2, §7.2.3)."""

from __future__ import annotations

import math

import pytest
import torch

from rmldnn_py.config.types import SchedulerConfig
from rmldnn_py.engine.schedulers import SCHEDULERS, build_scheduler
from rmldnn_py.errors import ConfigError

LR0 = 0.05

# name → (options, lr during epoch e+1 as a function of e = completed epochs)
CASES = {
    "Step": [
        ({"step_size": 3}, lambda e: LR0 * 0.1 ** (e // 3)),
        ({"step_size": 4, "gamma": 0.5}, lambda e: LR0 * 0.5 ** (e // 4)),
    ],
    "MultiStep": [
        ({"milestones": [2, 5, 11]}, lambda e: LR0 * 0.1 ** sum(m <= e for m in (2, 5, 11))),
        ({"milestones": [1, 19], "gamma": 0.3},
         lambda e: LR0 * 0.3 ** sum(m <= e for m in (1, 19))),
    ],
    "Exponential": [
        ({"gamma": 0.95}, lambda e: LR0 * 0.95 ** e),
        ({"gamma": 0.5}, lambda e: LR0 * 0.5 ** e),
    ],
    "Warmup": [
        ({}, lambda e: LR0 * (0.2 + 0.8 * min(e, 5) / 5)),
        ({"num_epochs": 7, "start_factor": 0.1}, lambda e: LR0 * (0.1 + 0.9 * min(e, 7) / 7)),
    ],
}


def make_optimizer(lr: float = LR0, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr * (i + 1)}
              for i in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def test_every_scheduler_has_cases():
    assert set(SCHEDULERS.names()) == set(CASES)


@pytest.mark.parametrize("name,idx", [(n, i) for n in SCHEDULERS.names()
                                      for i in range(len(CASES[n]))])
def test_lr_sequence_over_20_epochs(name, idx):
    options, formula = CASES[name][idx]
    opt = make_optimizer(groups=2)
    sched = build_scheduler(SchedulerConfig(name.lower(), True, dict(options)), opt)
    assert sched.warnings == []
    seen = [sched.current_lr()]
    for _ in range(19):
        lr = sched.step()
        assert lr == sched.current_lr() == opt.param_groups[0]["lr"]
        seen.append(lr)
    assert seen == pytest.approx([formula(e) for e in range(20)], rel=1e-12, abs=0)
    # every parameter group follows the same factor of its own initial lr
    assert opt.param_groups[1]["lr"] == pytest.approx(2 * formula(19), rel=1e-12)


def test_rows_and_verbose():
    opt = make_optimizer()
    exp = build_scheduler(SchedulerConfig("exponential", True, {"gamma": 0.5}), opt)
    assert exp.rows == [("Type", "Exponential"), ("Gamma", "0.5"), ("Verbose", "True")]
    assert exp.verbose is True and exp.label_width == 7
    step = build_scheduler(SchedulerConfig("Step", False, {"step_size": 2}), make_optimizer())
    assert step.rows == [("Type", "Step"), ("Gamma", "0.1"), ("Step size", "2"),
                         ("Verbose", "False")]
    ms = build_scheduler(SchedulerConfig("multistep", True, {"milestones": [10, 20]}),
                         make_optimizer())
    assert ms.rows == [("Type", "MultiStep"), ("Gamma", "0.1"), ("Milestones", "[10, 20]"),
                       ("Verbose", "True")]
    wu = build_scheduler(SchedulerConfig("WARMUP"), make_optimizer())
    assert wu.rows == [("Type", "Warmup"), ("Num epochs", "5"), ("Start factor", "0.2"),
                       ("Verbose", "True")]


def test_default_verbose_true_and_message():
    sched = build_scheduler(SchedulerConfig("Exponential", options={"gamma": 0.5}),
                            make_optimizer(0.001))
    assert sched.verbose is True
    lr = sched.step()
    assert sched.message(lr) == "Learning rate adjusted to 0.0005"
    assert sched.message() == "Learning rate adjusted to 0.0005"


def test_warmup_sets_first_epoch_lr_at_construction():
    opt = make_optimizer(0.1)
    build_scheduler(SchedulerConfig("Warmup", True, {"num_epochs": 4, "start_factor": 0.5}), opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_state_dict_roundtrip():
    opt = make_optimizer()
    sched = build_scheduler(SchedulerConfig("Exponential", True, {"gamma": 0.9}), opt)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    opt2 = make_optimizer()
    sched2 = build_scheduler(SchedulerConfig("Exponential", True, {"gamma": 0.9}), opt2)
    sched2.load_state_dict(state)
    assert sched2.current_lr() == pytest.approx(LR0 * 0.9 ** 3)
    assert sched2.step() == pytest.approx(LR0 * 0.9 ** 4)


@pytest.mark.parametrize("name,options,key", [
    ("MultiStep", {"milestones": [5, 3]}, "milestones"),
    ("MultiStep", {"milestones": [2, 2]}, "milestones"),
    ("MultiStep", {}, "milestones"),
    ("MultiStep", {"milestones": [1.5]}, "milestones"),
    ("Step", {}, "step_size"),
    ("Step", {"step_size": 0}, "step_size"),
    ("Exponential", {}, "gamma"),
    ("Exponential", {"gamma": -0.5}, "gamma"),
    ("Warmup", {"start_factor": 1.0}, "start_factor"),
    ("Warmup", {"num_epochs": 0}, "num_epochs"),
])
def test_invalid_options_name_the_key(name, options, key):
    with pytest.raises(ConfigError) as info:
        build_scheduler(SchedulerConfig(name, True, options), make_optimizer())
    msg = str(info.value)
    assert f"neural_network.optimizer.lr_scheduler.{key}:" in msg
    assert "\n" not in msg


def test_milestones_message():
    with pytest.raises(ConfigError,
                       match=r"milestones: must be strictly increasing \(got \[5, 3\]\)"):
        build_scheduler(SchedulerConfig("MultiStep", True, {"milestones": [5, 3]}),
                        make_optimizer())


def test_unknown_type_did_you_mean():
    with pytest.raises(ConfigError) as info:
        build_scheduler(SchedulerConfig("Exponentail", True, {"gamma": 0.5}), make_optimizer())
    msg = str(info.value)
    assert msg.startswith("neural_network.optimizer.lr_scheduler.type: unknown")
    assert "Did you mean 'Exponential'?" in msg


def test_unknown_key_warning():
    sched = build_scheduler(SchedulerConfig("Exponential", True, {"gamma": 0.5, "gama": 2}),
                            make_optimizer())
    assert len(sched.warnings) == 1
    assert sched.warnings[0].startswith("neural_network.optimizer.lr_scheduler.gama: unknown key")
    assert "Did you mean 'gamma'?" in sched.warnings[0]
    assert not math.isnan(sched.current_lr())
