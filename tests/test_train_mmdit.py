"""The MMDiT shapes trainer (tools/shapes/train_mmdit.py) on its tiny ``test`` preset: it learns, saves a
folder the renderer loads, resumes exactly, and warm-starts a model of another patch size; with
``--ground`` its name tokens, isolation and attention maps are the ones the renderer reads."""

from __future__ import annotations

import json

import pytest
import torch

from tools.shapes import train_mmdit as tm

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUIET = dict(log=lambda m: None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("mmdit") / "m"
    return out, tm.train("test", out, seed=0, steps=12, **QUIET)


def test_tiny_run_lowers_the_held_out_loss_and_loads_in_the_renderer(trained):
    from plan_and_render import renderer

    out, rec = trained
    assert rec["steps"] == 12 and rec["eval_loss"]["end"] < 0.9 * rec["eval_loss"]["start"]
    assert json.loads((out / "training.json").read_text())["config"] == rec["config"] == tm.PRESETS["test"] | {"steps": 12}
    pipe = renderer.load_pipeline(str(out), device="cpu", dtype="fp32")
    assert type(pipe.transformer).__name__ == "SD3Transformer2DModel" and pipe.transformer.config.patch_size == 2


def test_learning_rate_warms_up_holds_then_falls_to_zero():
    p = dict(lr=1e-3, warmup=4, steps=10, decay=0.2)  # decay over the last 2 steps: 8 and 9
    assert [tm.lr_at(s, p) for s in range(10)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 5e-4])


def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path):
    straight = tm.train("test", None, seed=1, steps=6, **QUIET)
    ckpt = tmp_path / "state.pt"

    def interrupt_after_step_2(message: str) -> None:
        if message == "saved step 2":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tm.train("test", None, seed=1, steps=6, save_every=2, checkpoint=ckpt, log=interrupt_after_step_2)
    assert torch.load(ckpt, weights_only=False)["step"] == 2
    resumed = tm.train("test", None, seed=1, steps=6, checkpoint=ckpt, resume=True, **QUIET)
    assert [c["loss"] for c in resumed["loss_curve"]] == [c["loss"] for c in straight["loss_curve"]]
    assert resumed["eval_loss"]["end"] == pytest.approx(straight["eval_loss"]["end"], rel=1e-5)


def test_warm_start_keeps_blocks_and_encoders_and_renews_what_the_patch_size_changes(trained):
    out, _ = trained
    p = {**tm.PRESETS["test"], "patch": 4, "n_scenes": 4}
    tr = tm.Trainer(p, seed=0)
    fresh = tm.warm_start(tr, out)
    assert sorted(fresh) == ["transformer.pos_embed.pos_embed", "transformer.pos_embed.proj.weight",
                             "transformer.proj_out.bias", "transformer.proj_out.weight"]
    from diffusers import SD3Transformer2DModel
    from transformers import T5EncoderModel

    src = SD3Transformer2DModel.from_pretrained(out / "transformer", torch_dtype=torch.float32)
    for live in (tr.models[0], tr.ema[0] if tr.ema else tr.models[0]):
        assert torch.equal(live.transformer_blocks[0].attn.to_q.weight, src.transformer_blocks[0].attn.to_q.weight)
        assert live.pos_embed.proj.weight.shape == (src.config.num_attention_heads * src.config.attention_head_dim,
                                                    4, 4, 4)
    t5 = T5EncoderModel.from_pretrained(out / "text_encoder_3", dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(tr.models[3].parameters(), t5.parameters()))
    # and the warm-started model trains: one step runs on the 8x8 grid of 4x4 patches
    assert torch.isfinite(torch.tensor(tr.step()["flow"]))


def test_overrides_and_init_are_recorded_and_build_the_model_they_name(trained, tmp_path):
    from plan_and_render import renderer

    out, _ = trained
    rec = tm.train("test", tmp_path / "p4", seed=0, steps=2, overrides={"patch": 4, "lr": 1e-3}, init=out, **QUIET)
    assert rec["config"]["patch"] == 4 and rec["config"]["lr"] == 1e-3 and rec["config"]["init"] == str(out)
    assert rec["init"]["folder"] == str(out) and rec["init"]["record"]["steps"] == 12  # the run it continued
    pipe = renderer.load_pipeline(str(tmp_path / "p4"), device="cpu", dtype="fp32")
    assert pipe.transformer.config.patch_size == 4
    # every layout method reads its maps on the coarser 8x8 grid of a 4x4-patch model
    from plan_and_render.scene import Canvas, PlanObject, ScenePlan

    plan = ScenePlan(prompt="a red circle and a blue square", canvas=Canvas(width=64, height=64), objects=[
        PlanObject(id="circle-1", name="circle", phrase="a red circle", attributes=["red"], box=(0.05, 0.1, 0.45, 0.5)),
        PlanObject(id="square-1", name="square", phrase="a blue square", attributes=["blue"], box=(0.55, 0.5, 0.95, 0.9)),
    ])
    for method in ("refocus", "zest", "excite", "rca", "backward"):
        res = pipe(plan, method=method, seed=0, steps=2, progress=False)
        assert res.images[0].size == (64, 64) and set(res.scores) == {"circle-1", "square-1"}, method
    # 16 positions of 4x4 latent pixels, VAE factor 2: up to 128 px a side (2x2 patches would allow 64)
    wide = plan.model_copy(update={"canvas": Canvas(width=128, height=64)})
    assert pipe(wide, method="none", seed=0, steps=1, progress=False).images[0].size == (128, 64)
    from plan_and_render.errors import UsageError

    with pytest.raises(UsageError, match="at most 128x128 pixels"):
        pipe(plan.model_copy(update={"canvas": Canvas(width=256, height=64)}), method="none", steps=1, progress=False)


@pytest.mark.parametrize("argv, says", [(["--patch", "3"], "invalid choice: 3"),
                                        (["--init", "/no/such/folder"], "is not a trained folder"),
                                        (["--fit-budget", "--time-budget", "0"], "--fit-budget needs a time budget")])
def test_bad_arguments_stop_with_one_usage_line(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        tm.main(["--preset", "test", *argv])
    assert exc.value.code == 2 and says in capsys.readouterr().err


# ---------------------------------------------------------------------------
# --ground: the UNet shapes model's grounding carried over to the joint sequence
# ---------------------------------------------------------------------------

GROUNDED = {**tm.PRESETS["test"], **tm.GROUNDING, "n_scenes": 8}


@pytest.fixture(scope="module")
def grounded():
    torch.manual_seed(0)
    return tm.Trainer(GROUNDED, seed=0)


def test_grounding_takes_the_unet_models_weights():
    from tools.shapes.model import PRESETS

    assert tm.GROUNDING == {**{k: PRESETS["cpu"][k] for k in ("isolate", "null_weight", "attn_weight")},
                            "freeze_clip": True}
    assert tm.GROUNDING["attn_weight"] > 0 and 0 < tm.GROUNDING["isolate"] < 1


def test_name_tokens_point_at_each_objects_shape_word_in_the_clip_and_the_t5_part(grounded):
    tr, n_clip = grounded, GROUNDED["clip_length"]
    clip, t5 = tr.parts["tokenizer"], tr.parts["tokenizer_3"]
    scenes = tm.generate(8, 0, 32)
    for i, objects in enumerate(scenes[2]):
        for k, phrase in enumerate(objects):
            shape = phrase.split()[1]
            at_clip, at_t5 = int(tr.square.names[i, 0, k]), int(tr.square.names[i, 1, k])
            assert clip.convert_ids_to_tokens(int(tr.square.ids[0][i, at_clip])) == f"{shape}</w>"
            assert n_clip <= at_t5 and t5.convert_ids_to_tokens(int(tr.square.ids[2][i, at_t5 - n_clip])) == f"\u2581{shape}"
        assert (tr.square.names[i, :, len(objects):] == -1).all()


def test_grounding_processor_attends_as_diffusers_and_keeps_text_normalised_maps():
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    torch.manual_seed(0)
    model = tm.build_parts(tm.PRESETS["test"])["transformer"].eval()
    x, seq, pooled = torch.randn(2, 4, 32, 32), torch.randn(2, 48, 32), torch.randn(2, 32)
    with torch.no_grad():
        plain = model(x, encoder_hidden_states=seq, pooled_projections=pooled, timestep=torch.tensor([500.0, 500.0])).sample
        store: list = []
        model.set_attn_processor(tm.GroundingProcessor(store))
        ours = model(x, encoder_hidden_states=seq, pooled_projections=pooled, timestep=torch.tensor([500.0, 500.0])).sample
    assert torch.allclose(ours, plain, atol=1e-5)
    assert len(store) == 2 and all(m.shape == (2, 256, 48) for m in store)  # 2 blocks, 16x16 patches x 48 tokens
    assert all(torch.allclose(m.sum(-1), torch.ones(2, 256)) for m in store)
    model.set_attn_processor(JointAttnProcessor2_0())


def test_isolation_keeps_start_and_name_states_and_empties_the_rest_of_the_isolated_rows(grounded):
    tr = grounded
    ids = [a[:2] for a in tr.square.ids]
    seq, pooled = tr.embed(tr.models, ids)
    names, iso = tr.square.names[:2], torch.tensor([True, False])
    seq_in, pooled_in, null = tr.isolate(tr.models, seq, pooled, names, iso)
    empty_seq, empty_pooled = tr.embed(tr.models, tr.empty)
    keep = {0, *[int(q) for q in names[0].flatten() if q >= 0]}
    for pos in range(seq.shape[1]):
        want = seq[0, pos] if pos in keep else empty_seq[0, pos]
        assert torch.equal(seq_in[0, pos], want), pos
    assert torch.equal(seq_in[1], seq[1]) and torch.equal(pooled_in[1], pooled[1])
    assert torch.equal(pooled_in[0], empty_pooled[0])
    assert float(null.detach()) > 0  # random encoders: the caption's states are far from the empty prompt's
    # frozen CLIPs: the null loss reads the T5 part alone (the CLIP part cannot move)
    t5_off = torch.ones(2, seq.shape[1], dtype=torch.bool)
    t5_off[:, : GROUNDED["clip_length"]] = False
    t5_off.scatter_(1, names.flatten(1).clamp_min(0), False)
    want = ((seq - empty_seq).pow(2) * t5_off[..., None]).sum() / (t5_off.sum() * seq.shape[-1])
    assert float(null.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


def test_grounding_freezes_the_clip_encoders_and_trains_t5_and_the_transformer(grounded):
    tr = grounded
    trained = {id(q) for g in tr.opt.param_groups for q in g["params"]}
    assert not any(id(q) in trained for m in tr.models[1:3] for q in m.parameters())
    assert all(id(q) in trained for m in (tr.models[0], tr.models[3]) for q in m.parameters())


def test_a_grounded_step_lowers_the_attention_loss_it_is_trained_on():
    torch.manual_seed(0)
    tr = tm.Trainer({**GROUNDED, "lr": 3e-3, "ema": 0.0, "batch": 8}, seed=0)
    batch = tr.draw(8)
    before = float(tr.loss(tr.models, *batch)["attn"].detach())
    for _ in range(8):
        tr.opt.zero_grad(set_to_none=True)
        out = tr.loss(tr.models, *batch)
        (out["attn"]).backward()
        tr.opt.step()
    assert float(tr.loss(tr.models, *batch)["attn"].detach()) < 0.95 * before


def test_a_grounded_run_records_its_recipe_and_logs_every_loss(tmp_path):
    lines: list[str] = []
    rec = tm.train("test", tmp_path / "g", seed=0, steps=4, overrides=dict(tm.GROUNDING), log=lines.append)
    assert "grounded (--ground)" in rec["objective"] and rec["config"]["attn_weight"] == tm.GROUNDING["attn_weight"]
    assert {"loss", "attn", "null"} <= set(rec["loss_curve"][-1])
    assert any(" attn " in m and " null " in m for m in lines)


def test_wide_scenes_and_repeats_train_with_grounding_on_the_wide_grid(tmp_path):
    over = {**tm.GROUNDING, "patch": 4, "repeat_share": 1.0, "n_wide": 4, "wide_share": 1.0}
    tr = tm.Trainer({**tm.PRESETS["test"], **over, "n_scenes": 4}, seed=0)
    assert tr.wide.images.shape == (4, 32, 64, 3) and tr.wide.masks.shape[-2:] == (16, 32)
    scenes = tm.generate(4, 0, 32, recipe=tm.recipe_of({"repeat_share": 1.0}))
    assert all(len(set(o)) < len(o) for o in scenes[2])  # every scene names one colour-shape pair twice or more
    data, idx, t, noise, drop, iso = tr.draw(4)
    assert data is tr.wide and noise.shape == (4, 4, 32, 64)
    out = tr.loss(tr.models, data, idx, t, noise, drop, iso)
    assert torch.isfinite(out["attn"]) and float(out["attn"].detach()) > 0
    rec = tm.train("test", None, seed=0, steps=2, overrides={**over, "n_scenes": 4}, **QUIET)
    assert rec["data"]["wide"]["share_of_batches"] == 1.0 and rec["data"]["recipe"]["repeat_share"] == 1.0


def test_wide_options_go_together(capsys):
    with pytest.raises(SystemExit) as exc:
        tm.main(["--preset", "test", "--n-wide", "8"])
    assert exc.value.code == 2 and "go together" in capsys.readouterr().err


# -- --teacher: a trained shapes UNet's noise estimate as the flow target ------------------------------

TEACHER = "models/shapes-tiny"


class OracleUNet(torch.nn.Module):
    """Knows the clean latent: returns the exact DDPM noise of its input at (fractional) timestep k, reading
    the noise level off the schedule's own log-SNR table by linear interpolation between integer steps."""

    def __init__(self, x0: torch.Tensor, log_snr: torch.Tensor) -> None:
        super().__init__()
        self.x0, self.log_snr = x0, log_snr

    def forward(self, x, k, encoder_hidden_states=None):
        lo = k.floor().long().clamp(0, len(self.log_snr) - 2)
        ls = torch.lerp(self.log_snr[lo], self.log_snr[lo + 1], (k - lo).double())
        a = torch.sigmoid(ls).float().view(-1, 1, 1, 1)  # alpha-bar = SNR / (1 + SNR)
        return type("Out", (), {"sample": (x - a.sqrt() * self.x0) / (1 - a).sqrt()})()


@pytest.fixture(scope="module")
def teacher():
    return tm.Teacher(TEACHER)


def test_teacher_timesteps_have_the_flow_times_signal_to_noise_ratio(teacher):
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    k, inside = teacher.timestep(t)
    assert inside.all() and (k.diff() > 0).all()  # noisier flow time, later DDPM step
    lo = k.floor().long()
    got = torch.lerp(teacher.log_snr[lo], teacher.log_snr[lo + 1], (k - lo).double())
    assert torch.allclose(got, 2 * torch.log((1 - t.double()) / t.double()), atol=1e-4)
    assert abs(float(torch.sigmoid(got[2])) - 0.5) < 1e-4  # t = 0.5: signal and noise equal, alpha-bar 1/2
    _, inside = teacher.timestep(torch.tensor([0.001, 0.999]))
    assert not inside.any()  # beyond its 1,000 noise levels


def test_an_oracle_teacher_gives_exactly_the_plain_velocity_inside_its_span(teacher, monkeypatch):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(6, 4, 8, 8, generator=g) * 2 - 1, torch.randn(6, 4, 8, 8, generator=g)
    monkeypatch.setattr(teacher, "unet", OracleUNet(x0, teacher.log_snr))
    t = torch.tensor([0.05, 0.15, 0.4, 0.6, 0.8, 0.9])
    tt = t.view(-1, 1, 1, 1)
    fallback = torch.full_like(x0, 7.0)
    v = teacher.velocity((1 - tt) * x0 + tt * noise, t, teacher.ids(["a red circle"] * 6), fallback)
    span = (t >= tm.TEACHER_SPAN[0]) & (t <= tm.TEACHER_SPAN[1])
    assert span.tolist() == [False, True, True, True, True, False]
    assert torch.allclose(v[span], (noise - x0)[span], atol=1e-3)
    assert (v[~span] == 7.0).all()


def test_a_taught_run_trains_on_the_teachers_target_and_records_it(tmp_path, capsys):
    torch.manual_seed(0)
    tr = tm.Trainer({**tm.PRESETS["test"], "teacher": TEACHER}, seed=0)
    data, idx, t, noise, drop = tr.draw(4)
    t = torch.full_like(t, 0.5)
    taught = tr.loss(tr.models, data, idx, t, noise, drop)["flow"]
    plain = tr.loss(tr.models, data, idx, t, noise, drop, teach=False)["flow"]
    assert data.teacher_ids.shape[1] == 77 and abs(float(taught) - float(plain)) > 1e-4
    rec = tm.train("test", None, seed=0, steps=2, overrides={"teacher": TEACHER}, **QUIET)
    assert rec["config"]["teacher"] == TEACHER and "eps - x0 elsewhere" in rec["teacher"]
    with pytest.raises(SystemExit) as exc:
        tm.main(["--preset", "test", "--teacher", str(tmp_path)])
    assert exc.value.code == 2 and "no unet/" in capsys.readouterr().err


def test_batches_are_drawn_on_the_cpu_and_moved_to_the_trainers_device():
    """The draws come from a CPU generator whatever the device, so a GPU run sees the CPU run's batches."""
    a = tm.Trainer({**tm.PRESETS["test"], **tm.GROUNDING}, seed=0, device="cpu")
    b = tm.Trainer({**tm.PRESETS["test"], **tm.GROUNDING}, seed=0)
    first, second = a.draw(4), b.draw(4)
    assert all(torch.equal(x, y) for x, y in zip(first[1:], second[1:])) and len(first) == 6
    assert all(x.device == a.device for x in first[1:]) and a.square.images.device == a.device
    assert a.models[0].pos_embed.proj.weight.device == a.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_trainer_computes_the_cpu_trainers_loss():
    cpu = tm.Trainer({**tm.PRESETS["test"], **tm.GROUNDING}, seed=0)
    gpu = tm.Trainer({**tm.PRESETS["test"], **tm.GROUNDING}, seed=0, device="cuda")
    lc, lg = cpu.loss(cpu.models, *cpu.draw(4)), gpu.loss(gpu.models, *gpu.draw(4))
    assert float(lg["flow"]) == pytest.approx(float(lc["flow"]), rel=1e-3)


def test_cuda_without_a_gpu_is_one_usage_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        tm.main(["--preset", "test", "--device", "cuda"])
    assert exc.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_adaln_zero_starts_every_block_as_the_identity_and_the_output_at_zero():
    torch.manual_seed(0)
    model = tm.build_parts(tm.PRESETS["test"])["transformer"].eval()
    tm.adaln_zero_init(model)
    x, text = torch.randn(2, 4, 8, 8), torch.randn(2, 5, tm.PRESETS["test"]["t5_dim"])
    pooled, t = torch.randn(2, 2 * tm.PRESETS["test"]["clip_hidden"]), torch.tensor([100.0, 900.0])
    with torch.no_grad():
        assert model(x, encoder_hidden_states=text, pooled_projections=pooled, timestep=t).sample.abs().max() == 0
        hidden, context = model.pos_embed(x), model.context_embedder(text)
        temb = model.time_text_embed(t, pooled)
        ctx_out, hid_out = model.transformer_blocks[0](hidden_states=hidden, encoder_hidden_states=context, temb=temb)
    assert torch.equal(hid_out, hidden) and torch.equal(ctx_out, context)
    stamp = model.time_text_embed.timestep_embedder.linear_1.weight.detach()
    assert 0.01 < float(stamp.std()) < 0.03  # N(0, 0.02), not Xavier
    q = model.transformer_blocks[0].attn.to_q.weight.detach()  # Xavier-uniform: bound sqrt(6 / (fan_in + fan_out))
    assert float(q.abs().max()) <= (6 / sum(q.shape)) ** 0.5 and float(q.std()) > 0.5 * (2 / sum(q.shape)) ** 0.5
    assert model.transformer_blocks[0].attn.to_q.bias.abs().max() == 0


def test_init_weights_option_reaches_the_trainer_and_its_record(tmp_path):
    fresh = tm.Trainer({**tm.PRESETS["test"], "init_weights": "adaln-zero", "ema": 0.9}, seed=0)
    assert fresh.models[0].proj_out.weight.abs().max() == 0 and fresh.ema[0].proj_out.weight.abs().max() == 0
    assert tm.Trainer(tm.PRESETS["test"], seed=0).models[0].proj_out.weight.abs().max() > 0
    tm.main(["--preset", "test", "--steps", "1", "--init-weights", "adaln-zero", "--save-every", "0",
             "--out", str(tmp_path / "m")])
    assert json.loads((tmp_path / "m" / "training.json").read_text())["config"]["init_weights"] == "adaln-zero"


def test_steps_within_a_budget_hand_checked():
    # 50 steps in 10 s = 5 steps/s; 90 s left at 90 % -> 81 s -> 405 more steps
    assert tm.steps_within(50, 50, 10.0, 100.0) == 455
    assert tm.steps_within(50, 50, 10.0, 100.0, margin=1.0) == 500
    assert tm.steps_within(50, 50, 120.0, 100.0) == 51  # already over: one more step, not fewer than done


def test_fit_budget_shortens_the_run_so_its_decay_ends_inside_the_budget(monkeypatch):
    clock = [0.0]
    step = tm.Trainer.step

    def slow_step(self):  # every step takes 2 s of the fake clock
        clock[0] += 2.0
        return step(self)

    monkeypatch.setattr(tm.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(tm.Trainer, "step", slow_step)
    monkeypatch.setattr(tm, "FIT_AFTER", 5)
    rec = tm.train("test", None, seed=0, steps=1000, time_budget=30.0, fit_budget=True, **QUIET)
    # 5 steps in 10 s: (30 - 10) * 0.9 * 5 / 10 = 9 more -> 14 steps (28 s of the 30), decaying from step
    # int(14 * 0.8) = 11, so the last (index 13) runs at a third of the peak; unfitted, it would be the peak
    assert rec["steps"] == 14 and rec["config"]["steps"] == 14 and clock[0] <= 30.0
    assert rec["config"]["fitted_to_budget"] == {"asked": 1000, "timed_steps": 5, "timed_s": 10.0}
    assert rec["loss_curve"][-1]["step"] == 14
    assert rec["loss_curve"][-1]["lr"] == pytest.approx(tm.PRESETS["test"]["lr"] / 3, rel=1e-3)


# --align: REPA-style alignment of one block's image states to the scene's label map
def test_object_classes_number_every_colour_shape_pair_after_the_background():
    classes = tm.object_classes([["red circle", "blue square"], ["purple ring"]], 4)
    n_colours = len(tm.COLOURS)  # red 0, ..., blue 4, purple 5; circle 0, square 1, ..., ring 4
    assert classes.tolist() == [[1, 1 + n_colours + 4, -1, -1], [1 + 4 * n_colours + 5, -1, -1, -1]]
    assert tm.ALIGN_CLASSES == 1 + 5 * 6 and int(classes.max()) < tm.ALIGN_CLASSES


def test_label_map_gives_each_patch_its_objects_shares_and_the_rest_to_the_background():
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, :2, :2] = 1.0     # object 0 fills the top-left patch of a 2x2 grid
    masks[0, 1, 2:, :] = 0.5      # object 1 covers half of each bottom patch
    target = tm.label_map(masks, torch.tensor([[3, 7]]), (2, 2))
    assert target.shape == (1, 4, tm.ALIGN_CLASSES) and torch.allclose(target.sum(-1), torch.ones(1, 4))
    assert target[0, 0, 3] == 1 and target[0, 1, 0] == 1              # top left: all object 0; top right: empty
    assert target[0, 2, 7] == target[0, 2, 0] == target[0, 3, 7] == 0.5  # bottom: half object 1, half background
    none = tm.label_map(masks, torch.tensor([[3, -1]]), (2, 2))        # an absent object's mask counts for nothing
    assert none[0, 2, 0] == 1 and none[0, 2, 7] == 0


def test_the_align_head_reads_block_layers_over_three_and_its_loss_falls_when_trained():
    assert [tm.align_block(n) for n in (2, 6, 24)] == [0, 2, 8]
    torch.manual_seed(0)
    tr = tm.Trainer({**GROUNDED, "patch": 4, "align_weight": 0.5, "lr": 3e-3, "ema": 0.0, "batch": 8}, seed=0)
    assert tr.square.classes.shape == (8, 4) and tr.head[-1].out_features == tm.ALIGN_CLASSES
    batch = tr.draw(8)
    before = float(tr.loss(tr.models, *batch)["align"].detach())
    assert before == pytest.approx(torch.log(torch.tensor(float(tm.ALIGN_CLASSES))).item(), rel=0.2)  # near chance
    for _ in range(8):
        tr.opt.zero_grad(set_to_none=True)
        tr.loss(tr.models, *batch)["align"].backward()
        tr.opt.step()
    assert float(tr.loss(tr.models, *batch)["align"].detach()) < 0.9 * before


@pytest.mark.parametrize("weight", ["0", "-0.5"])
def test_an_align_weight_that_is_not_positive_is_one_usage_line(weight, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tm.main(["--preset", "test", "--align", weight, "--out", str(tmp_path / "m")])
    assert stop.value.code == 2 and "the weight must be positive" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_an_aligned_run_resumes_exactly_and_records_its_recipe_but_saves_no_head(tmp_path):
    over = {"align_weight": 0.5}
    straight = tm.train("test", tmp_path / "a", seed=1, steps=4, overrides=over, **QUIET)
    assert "aligned (--align)" in straight["objective"] and "align" in straight["loss_curve"][-1]
    assert not any("head" in p.name for p in (tmp_path / "a").rglob("*"))
    ckpt = tmp_path / "state.pt"

    def interrupt_after_step_2(message: str) -> None:
        if message == "saved step 2":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tm.train("test", None, seed=1, steps=4, save_every=2, checkpoint=ckpt, overrides=over, log=interrupt_after_step_2)
    assert torch.load(ckpt, weights_only=False)["head"] is not None
    resumed = tm.train("test", None, seed=1, steps=4, checkpoint=ckpt, resume=True, overrides=over, **QUIET)
    assert [c["align"] for c in resumed["loss_curve"]] == [c["align"] for c in straight["loss_curve"]]


def test_attn_weight_sets_the_grounded_runs_attention_loss_weight(tmp_path, capsys):
    tm.main(["--preset", "test", "--ground", "--attn-weight", "0.2", "--steps", "2", "--save-every", "2",
             "--out", str(tmp_path / "g")])
    rec = json.loads((tmp_path / "g" / "training.json").read_text())
    assert rec["config"]["attn_weight"] == 0.2 != tm.GROUNDING["attn_weight"]
    assert "attention loss x0.2" in rec["objective"]


@pytest.mark.parametrize("args, says", [(["--attn-weight", "0.2"], "give --ground"),
                                        (["--ground", "--attn-weight", "-1"], "0 or more")])
def test_bad_attn_weights_are_one_usage_line(args, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tm.main(["--preset", "test", *args, "--out", str(tmp_path / "g")])
    assert stop.value.code == 2 and says in capsys.readouterr().err


def test_t_location_moves_the_flow_times_as_a_logit_normal_and_is_recorded(tmp_path):
    """--t-location m: t = sigmoid(m + z), so the median time is sigmoid(m) (0.5 by SD 3's recipe, 0.269 at m = -1);
    the same random draws, so a run keeps its scenes and noise."""
    plain = tm.Trainer(tm.PRESETS["test"], seed=0)
    low = tm.Trainer({**tm.PRESETS["test"], "t_location": -1.0}, seed=0)
    t0, t1 = plain.draw(4000)[2], low.draw(4000)[2]
    assert abs(float(t0.median()) - 0.5) < 0.02 and abs(float(t1.median()) - 0.2689) < 0.02
    assert torch.allclose(torch.logit(t1), torch.logit(t0) - 1.0, atol=1e-4)
    tm.main(["--preset", "test", "--steps", "1", "--t-location", "-0.5", "--out", str(tmp_path / "m")])
    rec = json.loads((tmp_path / "m" / "training.json").read_text())
    record = rec["runs"][-1] if "runs" in rec else rec
    assert record["config"]["t_location"] == -0.5 and "logit-normal(-0.5, 1)" in record["objective"]
