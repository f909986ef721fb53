"""The shapes world's learned latent (tools/shapes/train_vae.py) and the MMDiT trained in it (``--vae``):
the autoencoder learns, normalises its latents as SD 3's VAE does, and a transformer trained on them saves a
folder the renderer draws with at the autoencoder's scale."""

from __future__ import annotations

import json

import pytest
import torch

from tools.shapes import train_mmdit as tm
from tools.shapes import train_vae as tv

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUIET = dict(log=lambda m: None)


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "v"
    return out, tv.train({**tv.PRESETS["test"], "steps": 30, "n_scenes": 32}, out, seed=0, **QUIET)


def test_pixels_are_doubled_onto_the_renderers_canvas():
    scene = torch.tensor([[[[0, 255, 127]]]], dtype=torch.uint8)  # one pixel, (N, H, W, 3)
    x = tv.to_pixels(scene)
    assert x.shape == (1, 3, 2, 2)
    assert x[0, :, 1, 1].tolist() == pytest.approx([-1.0, 1.0, 127 / 127.5 - 1])
    assert torch.equal(x[..., 0, 0], x[..., 1, 0])


def test_training_lowers_the_reconstruction_error_and_records_it(vae_folder):
    out, rec = vae_folder
    first, last = rec["loss_curve"][0]["l1"], rec["loss_curve"][-1]["l1"]
    assert rec["steps"] == 30 and last < 0.8 * first
    saved = json.loads((out / "training.json").read_text())
    assert saved["held_out_l1"] == rec["held_out_l1"] < first
    assert tm.latent_shape(tm.load_vae(out)) == (4, 8)  # four blocks: 64 / 8 a side


def test_latents_come_out_zero_mean_unit_spread_as_sd3_normalises_them(vae_folder):
    out, rec = vae_folder
    vae = tm.load_vae(out)
    assert vae.config.shift_factor == rec["latent"]["shift_factor"]
    images = torch.from_numpy(tm.generate(32, 0, 32)[0])  # the scenes the statistics were taken on
    z = tm.encode(vae, images)
    assert z.shape == (32, 4, 8, 8)
    assert abs(float(z.mean())) < 1e-4 and float(z.std()) == pytest.approx(1.0, abs=1e-3)


def test_the_kl_term_is_the_posteriors_divergence_per_pixel():
    vae = tv.build_vae(tv.PRESETS["test"])
    x = torch.zeros(2, 3, 64, 64)
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        mean, var = post.mean, post.var
        by_hand = 0.5 * (mean**2 + var - 1 - var.log()).sum((1, 2, 3)).mean() / (3 * 64 * 64)
        torch.manual_seed(0)
        out = tv.vae_loss(vae, x, kl_weight=2.0)
    assert float(out["kl"]) == pytest.approx(float(by_hand), rel=1e-4)
    assert float(out["total"]) == pytest.approx(float(out["l1"] + 2.0 * out["kl"]), rel=1e-5)


def test_an_mmdit_trained_in_the_learned_latent_saves_that_vae_and_renders(vae_folder, tmp_path):
    from plan_and_render import renderer

    vae_dir, _ = vae_folder
    out = tmp_path / "m"
    rec = tm.train("test", out, seed=0, steps=8, overrides={"vae": str(vae_dir), "patch": 1}, **QUIET)
    assert rec["eval_loss"]["end"] < rec["eval_loss"]["start"]
    assert "learned VAE" in rec["data"]["latent"]
    pipe = renderer.load_pipeline(str(out), device="cpu", dtype="fp32")
    cfg = pipe.transformer.config
    assert (cfg.in_channels, cfg.sample_size, cfg.patch_size, cfg.pos_embed_max_size) == (4, 8, 1, 16)
    assert pipe.vae.config.scaling_factor == tm.load_vae(vae_dir).config.scaling_factor
    assert pipe.vae_scale_factor == 8


def test_teacher_and_vae_do_not_go_together(vae_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tm.main(["--preset", "test", "--vae", str(vae_folder[0]), "--teacher", "models/shapes-tiny",
                 "--out", str(tmp_path / "m")])
    assert stop.value.code == 2
    assert "--teacher gives targets in the pixel latent" in capsys.readouterr().err


def test_a_folder_without_a_vae_config_is_one_usage_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tm.main(["--preset", "test", "--vae", str(tmp_path), "--out", str(tmp_path / "m")])
    assert stop.value.code == 2 and "not an AutoencoderKL folder" in capsys.readouterr().err


def test_patch_1_without_a_learned_latent_is_one_usage_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tm.main(["--preset", "test", "--patch", "1", "--out", str(tmp_path / "m")])
    assert stop.value.code == 2 and "--patch 1 is for a learned latent" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_continued_run_starts_from_the_saved_weights_and_records_them(vae_folder, tmp_path):
    first_dir, first = vae_folder
    p = {**tv.PRESETS["test"], "steps": 1, "lr": 0.0, "n_scenes": 32}  # no update: the weights as loaded
    rec = tv.train(p, tmp_path / "c", seed=0, init=first_dir, **QUIET)
    assert rec["held_out_l1"] == pytest.approx(first["held_out_l1"], rel=1e-5)
    assert rec["init"]["folder"] == str(first_dir) and rec["init"]["record"]["steps"] == 30
    assert rec["latent"] == pytest.approx(first["latent"], rel=1e-5)  # the same statistics, taken again


def test_decoder_only_keeps_the_encoder_so_the_latents_stay_valid(vae_folder, tmp_path):
    first_dir, first = vae_folder
    p = {**tv.PRESETS["test"], "steps": 5, "n_scenes": 32}
    rec = tv.train(p, tmp_path / "d", seed=1, init=first_dir, decoder_only=True, **QUIET)
    before, after = tm.load_vae(first_dir), tm.load_vae(tmp_path / "d")
    enc_b, enc_a = before.encoder.state_dict(), after.encoder.state_dict()
    assert all(torch.equal(enc_b[k], enc_a[k]) for k in enc_b)
    assert any(not torch.equal(a, b) for a, b in zip(before.decoder.parameters(), after.decoder.parameters()))
    assert rec["decoder_only"] and rec["latent"] == first["latent"]  # kept, not re-estimated on other scenes


def test_decoder_only_without_init_is_one_usage_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tv.main(["--preset", "test", "--decoder-only", "--out", str(tmp_path / "v")])
    assert stop.value.code == 2 and "give --init" in capsys.readouterr().err


def test_scene_latents_read_the_folders_vae(vae_folder):
    from tools.shapes.model import pixel_vae

    images = torch.from_numpy(tm.generate(2, 0, 32)[0])
    assert torch.equal(tm.scene_latents(pixel_vae(), images), tm.to_latents(images))
    learned = tm.load_vae(vae_folder[0])
    assert torch.equal(tm.scene_latents(learned, images), tm.encode(learned, images))


def test_the_shipped_autoencoder_keeps_most_objects_recognisable():
    """models/shapes-vae (the latent of ``gpu_transformers.sh train-latent``): on held-out scenes the exact
    detector still finds at least 80 % of the objects after encode and decode (95.7 % on 200 scenes, stars
    92.6 %: benchmarks/results/mmdit_vae_runs.json), and its latents come out normalised."""
    from benchmarks.shapes_vae import found_share

    vae = tm.load_vae("models/shapes-vae")
    images, _, objects, _ = tm.generate(24, 7 * 10**7, 32)
    assert found_share(tv.to_uint8(tv.reconstruct(vae, torch.from_numpy(images))), objects) >= 0.8
    z = tm.encode(vae, torch.from_numpy(images))
    assert abs(float(z.mean())) < 0.2 and 0.8 < float(z.std()) < 1.2


def test_ctrl_c_saves_the_steps_taken_marked_interrupted_and_stops(tmp_path):
    def interrupt_at_the_second_log_line(message: str, seen=[]) -> None:
        seen.append(message)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tv.train({**tv.PRESETS["test"], "steps": 20, "n_scenes": 16}, tmp_path / "v", seed=0,
                 log=interrupt_at_the_second_log_line)
    saved = json.loads((tmp_path / "v" / "training.json").read_text())
    assert saved["interrupted"] is True and saved["steps"] == 4  # logged every 2 steps: stopped at the second line
    assert tm.latent_shape(tm.load_vae(tmp_path / "v")) == (4, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]  # no half-written sibling left


def test_a_finished_run_is_not_marked_interrupted(vae_folder):
    assert json.loads((vae_folder[0] / "training.json").read_text())["interrupted"] is False


def test_the_outline_marks_a_shapes_edge_pixels_and_not_the_background_texture():
    x = torch.full((1, 3, 8, 8), 0.8)
    x += 0.03 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # the backgrounds' noise
    x[:, :, 2:6, 2:6] = torch.tensor([0.7, -0.8, -0.8])[:, None, None]  # a red 4x4 square
    edge = tv.outline(x)[0, 0]
    ring = torch.zeros(8, 8, dtype=torch.bool)
    ring[1:7, 1:7] = True
    ring[3:5, 3:5] = False  # one pixel either side of the square's border
    assert torch.equal(edge.bool(), ring)


def test_the_edge_weight_counts_each_outline_pixel_1_plus_w_times():
    x = torch.zeros(1, 3, 4, 4)
    x[:, :, 0, 0] = 1.0  # one bright pixel: it and its 3 neighbours are the outline (4 pixels)
    rec = x.clone()
    rec[:, :, 0, 0] = 0.0  # an error of 1 on the outline, in every channel
    rec[:, :, 3, 3] = 0.5  # an error of 0.5 off it
    assert float(tv.weighted_l1(rec, x)) == pytest.approx((1 + 0.5) / 16)  # plain L1
    assert float(tv.weighted_l1(rec, x, 3.0)) == pytest.approx((4 * 1 + 0.5) / (4 * 4 + 12))


def test_a_negative_edge_weight_is_one_usage_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tv.main(["--preset", "test", "--edge-weight", "-1", "--out", str(tmp_path / "v")])
    assert stop.value.code == 2 and "--edge-weight must be 0 or more" in capsys.readouterr().err


def test_an_edge_weighted_decoder_run_records_its_weight(vae_folder, tmp_path):
    rec = tv.train({**tv.PRESETS["test"], "steps": 4, "n_scenes": 16, "edge_weight": 8.0}, tmp_path / "v", seed=1,
                   init=vae_folder[0], decoder_only=True, **QUIET)
    assert rec["preset"]["edge_weight"] == 8.0
    assert json.loads((tmp_path / "v" / "training.json").read_text())["preset"]["edge_weight"] == 8.0


def test_found_share_counts_one_shape_alone():
    from benchmarks.shapes_vae import found_share
    from tools.shapes.data import make_scene

    scenes = [make_scene(s, 64) for s in range(6)]
    images = [s.image for s in scenes]
    objects = [[f"{o.colour} {o.shape}" for o in s.objects] for s in scenes]
    blank = [im * 0 + 200 for im in images]  # nothing to find
    assert found_share(images, objects) == 1.0 and found_share(blank, objects) == 0.0
    shape = scenes[0].objects[0].shape
    mixed = [im if i % 2 == 0 else b for i, (im, b) in enumerate(zip(images, blank))]
    asked = [(i, o) for i, s in enumerate(scenes) for o in s.objects if o.shape == shape]
    assert found_share(mixed, objects, shape) == pytest.approx(sum(i % 2 == 0 for i, _ in asked) / len(asked))


class OracleFlow:
    """A stand-in MMDiT that knows the clean latents: its velocity at (x, t) is the straight path's,
    (x - z0) / t, whatever the caption (so guidance changes nothing)."""

    def __init__(self, z0):
        self.z0 = z0

    def encode_prompt(self, captions, *rest, **kw):
        n = len(captions)
        return torch.zeros(n, 3, 4), torch.ones(n, 3, 4), torch.zeros(n, 4), torch.ones(n, 4)

    def transformer(self, hidden_states, encoder_hidden_states, pooled_projections, timestep):
        t = (timestep / 1000).view(-1, 1, 1, 1)
        z0 = torch.cat([self.z0, self.z0])
        return type("Out", (), {"sample": (hidden_states - z0) / t})


@pytest.mark.parametrize("steps", [1, 3])
def test_redraw_follows_the_straight_flow_back_to_the_clean_latent(steps):
    from tools.shapes.redrawn import redraw

    z0 = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3, 0.7])
    out = redraw(OracleFlow(z0), z0, t, ["a red circle", "a blue square"], steps, scale=4.0,
                 generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, z0, atol=1e-5)  # Euler is exact on a straight path, at any step count


def test_redraw_starts_from_the_scene_noised_to_its_flow_time():
    from tools.shapes.redrawn import redraw

    z0 = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
    still = OracleFlow(z0)
    still.transformer = lambda hidden_states, **kw: type("Out", (), {"sample": torch.zeros_like(hidden_states)})
    out = redraw(still, z0, torch.tensor([0.25]), ["a red circle"], 2, 4.0, torch.Generator().manual_seed(1))
    assert torch.allclose(out, 0.75 * z0 + 0.25 * eps)  # a model that never moves keeps x_t = (1 - t) z0 + t eps


def test_same_encoder_looks_at_the_encoder_only(vae_folder):
    from tools.shapes.redrawn import same_encoder

    a, b = tm.load_vae(vae_folder[0]), tm.load_vae(vae_folder[0])
    with torch.no_grad():
        next(b.decoder.parameters()).add_(1.0)
    assert same_encoder(a, b)
    with torch.no_grad():
        next(b.encoder.parameters()).add_(1.0)
    assert not same_encoder(a, b)


@pytest.fixture(scope="module")
def tiny_latent_mmdit(vae_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("mmdit") / "m"
    tm.train("test", out, seed=0, steps=2, overrides={"vae": str(vae_folder[0]), "patch": 1}, **QUIET)
    return out


def test_a_decoder_trained_on_redrawn_latents_keeps_the_encoder_and_records_its_denoiser(vae_folder, tiny_latent_mmdit,
                                                                                         tmp_path):
    p = {**tv.PRESETS["test"], "steps": 6, "n_scenes": 32, "redraw_share": 1.0}
    rec = tv.train(p, tmp_path / "d", seed=1, init=vae_folder[0], decoder_only=True, denoiser=tiny_latent_mmdit,
                   **QUIET)
    before, after = tm.load_vae(vae_folder[0]), tm.load_vae(tmp_path / "d")
    from tools.shapes.redrawn import same_encoder

    assert same_encoder(before, after)
    assert any(not torch.equal(a, b) for a, b in zip(before.decoder.parameters(), after.decoder.parameters()))
    assert rec["denoiser"] == str(tiny_latent_mmdit) and rec["preset"]["redraw_pool"] == 8
    assert all(c["kl"] == 0 for c in rec["loss_curve"])  # every batch was a redrawn one: no KL term


def test_redrawn_latents_refuse_another_autoencoders_mmdit(vae_folder, tiny_latent_mmdit):
    from tools.shapes.redrawn import redrawn_latents

    other = tv.build_vae(tv.PRESETS["test"])  # fresh weights: another encoder
    scenes = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="encodes differently"):
        redrawn_latents(tiny_latent_mmdit, other, scenes, ["", ""], (0.1, 0.4), 1, seed=0, log=lambda m: None)


@pytest.mark.parametrize("args, says", [
    (["--denoiser", "models/shapes-mmdit-latent"], "give --decoder-only"),
    (["--decoder-only", "--denoiser", "models/shapes-tiny"], "not an MMDiT folder"),
    (["--decoder-only", "--denoiser", "models/shapes-mmdit-latent", "--redraw-t", "0.5,0.1"], "0 <= LO <= HI <= 1"),
    (["--decoder-only", "--denoiser", "models/shapes-mmdit-latent", "--redraw-t", "half"], "LO,HI flow times"),
    (["--decoder-only", "--redraw-t", "0.1,0.4"], "give --denoiser"),
])
def test_bad_denoiser_options_are_one_usage_line(args, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tv.main(["--init", "models/shapes-vae", *args, "--out", str(tmp_path / "v")])
    assert stop.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_a_denoiser_on_another_autoencoders_latents_is_one_usage_line(vae_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tv.main(["--init", str(vae_folder[0]), "--decoder-only", "--denoiser", "models/shapes-mmdit-latent",
                 "--out", str(tmp_path / "v")])
    assert stop.value.code == 2 and "another autoencoder's latents" in capsys.readouterr().err


def test_redraws_use_the_guidance_scale_a_render_of_the_folder_uses(tmp_path):
    from tools.shapes.redrawn import guidance_scale

    assert guidance_scale("models/shapes-mmdit-latent") == 4.0  # its guidance.json's settings
    assert guidance_scale(tmp_path) == 7.0  # no guidance.json: SD 3's default
