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


# schedules built on torch.optim.lr_scheduler, tested separately below against hand formulas
# and torch's own classes
TORCH_CASES = ("ReduceLROnPlateau", "Cosine", "OneCycle")


def test_every_scheduler_has_cases():
    assert set(SCHEDULERS.names()) == set(CASES) | set(TORCH_CASES)


@pytest.mark.parametrize("name,idx", [(n, i) for n in CASES for i in range(len(CASES[n]))])
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


# ------------------------------------------------------------------------------------------
# ReduceLROnPlateau, Cosine, OneCycle (rmldnn_py extensions on torch.optim.lr_scheduler)
# ------------------------------------------------------------------------------------------

def _cosine(e: int, lr0: float, eta_min: float, t_max: int) -> float:
    """SGDR closed form (Loshchilov & Hutter 2017, eq. 5): eta_min + (lr0 - eta_min)(1 + cos(pi e / T)) / 2."""
    return eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2


@pytest.mark.parametrize("warm,start", [(0, 0.2), (3, 0.1)])
def test_cosine_with_warmup_matches_hand_formula(warm, start):
    epochs, eta_min = 12, 0.001
    opt = make_optimizer()
    options = {"min_lr": eta_min, "warmup_epochs": warm, "start_factor": start}
    sched = build_scheduler(SchedulerConfig("cosine", True, options), opt, num_epochs=epochs,
                            steps_per_epoch=7)
    assert not sched.per_batch and not sched.on_eval
    seen = [sched.current_lr()]
    for _ in range(epochs - 1):
        seen.append(sched.step())
    want = []
    for e in range(epochs):
        if e < warm:   # linear warm-up from start·lr0 to lr0 over `warm` epochs
            want.append(LR0 * (start + (1 - start) * e / warm))
        else:
            want.append(_cosine(e - warm, LR0, eta_min, epochs - warm))
    assert seen == pytest.approx(want, rel=1e-9)


def test_onecycle_steps_per_batch_like_torch():
    epochs, steps = 3, 5
    opt = make_optimizer()
    options = {"max_lr": 0.4, "pct_start": 0.25, "anneal_strategy": "linear"}
    sched = build_scheduler(SchedulerConfig("OneCycle", True, options), opt, num_epochs=epochs,
                            steps_per_epoch=steps)
    assert sched.per_batch
    ref_opt = make_optimizer()
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.4, total_steps=epochs * steps,
                                              pct_start=0.25, anneal_strategy="linear",
                                              cycle_momentum=False)
    seen, want = [], []
    for _ in range(epochs):
        for _ in range(steps):
            seen.append(sched.current_lr())
            want.append(ref_opt.param_groups[0]["lr"])
            opt.step()
            ref_opt.step()
            sched.step_batch()
            ref.step()
        sched.step()           # the per-epoch step must not move a per-batch schedule
    assert seen == pytest.approx(want, rel=1e-12)
    assert 0.35 < max(seen) <= 0.4
    assert ("Total steps", "15") in sched.rows


def test_plateau_follows_torch_on_the_evaluation_loss():
    opt = make_optimizer()
    options = {"factor": 0.5, "patience": 1, "threshold": 0.01}
    sched = build_scheduler(SchedulerConfig("reducelronplateau", True, options), opt)
    assert sched.on_eval and not sched.per_batch
    ref_opt = make_optimizer()
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=1,
                                                     threshold=0.01)
    losses = [1.0, 0.9, 0.899, 0.898, 0.5, 0.5, 0.5, 0.5, 0.2]
    changed = []
    for loss in losses:
        assert sched.step() == sched.current_lr()          # epoch step: no effect
        changed.append(sched.step_eval(loss))
        ref.step(loss)
        assert sched.current_lr() == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12)
    assert any(changed) and sched.current_lr() < LR0


@pytest.mark.parametrize("name,options", [("Cosine", {"warmup_epochs": 2}),
                                          ("OneCycle", {}),
                                          ("ReduceLROnPlateau", {"patience": 0})])
def test_torch_scheduler_state_roundtrip(name, options):
    """A resumed schedule continues exactly where the saved one was."""
    def drive(sched, opt, n):
        out = []
        for _ in range(n):
            for _ in range(3):
                opt.step()
                sched.step_batch()
            sched.step()
            sched.step_eval(1.0)
            out.append(sched.current_lr())
        return out

    opt = make_optimizer()
    full = build_scheduler(SchedulerConfig(name, True, options), opt, num_epochs=6,
                           steps_per_epoch=3)
    whole = drive(full, opt, 6)
    opt_a = make_optimizer()
    a = build_scheduler(SchedulerConfig(name, True, options), opt_a, num_epochs=6,
                        steps_per_epoch=3)
    first = drive(a, opt_a, 3)
    opt_b = make_optimizer()        # the engine's order: build, then restore optimizer, schedule
    b = build_scheduler(SchedulerConfig(name, True, options), opt_b, num_epochs=6,
                        steps_per_epoch=3)
    opt_b.load_state_dict(opt_a.state_dict())
    b.load_state_dict(a.state_dict())
    assert first + drive(b, opt_b, 3) == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize("name,options,key", [
    ("Cosine", {"warmup_epochs": 10}, "warmup_epochs"),
    ("ReduceLROnPlateau", {"factor": 1.5}, "factor"),
    ("OneCycle", {"pct_start": 1.0}, "pct_start"),
])
def test_torch_scheduler_invalid_options(name, options, key):
    with pytest.raises(ConfigError, match=rf"lr_scheduler\.{key}:"):
        build_scheduler(SchedulerConfig(name, True, options), make_optimizer(), num_epochs=10,
                        steps_per_epoch=2)
