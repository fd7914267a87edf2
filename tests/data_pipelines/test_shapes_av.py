"""Tests for the audio-visual Shapes clips, their soundtrack and their records."""
import itertools

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader

from data_pipelines import shapes, shapes_av, shapes_av_writer, shapes_writer, soundtrack
from data_pipelines.grain_pipeline import make_train_dataset

CONFIGS = [(16, 8.0), (16, 16.0), (32, 8.0), (32, 16.0), (23, 11.0)]  # frames, fps


def _random_motion(rng):
    room = rng.uniform(5.0, 30.0, 2)
    return shapes_av.BouncingMotion(start=rng.uniform(0, 1, 2) * room,
                                    velocity=rng.uniform(-60.0, 60.0, 2), room=room)


def test_bouncing_motion_reflects_at_the_walls_at_its_contact_times():
    rng = np.random.default_rng(0)
    for _ in range(20):
        motion = _random_motion(rng)
        times = np.linspace(0.0, 3.0, 30001)
        position = motion.position(times)
        assert np.all(position >= -1e-9) and np.all(position <= motion.room + 1e-9)
        # Speed along each axis is constant; its sign flips exactly at the contacts.
        velocity = np.diff(position, axis=0) / np.diff(times)[:, None]
        deviates = ~np.isclose(np.abs(velocity), np.abs(motion.velocity), rtol=1e-6)
        contacts = motion.contacts(3.0)
        for axis in (0, 1):
            flips = np.flatnonzero(np.diff(np.sign(velocity[:, axis])) != 0)
            expected = [t for t, a in contacts if a == axis]
            assert len(flips) == len(expected)
            np.testing.assert_allclose(times[flips + 1], expected, atol=2e-4)
            for t in expected:  # the shape touches a wall at the contact instant
                at = motion.position(np.array([t]))[0, axis]
                assert min(at, motion.room[axis] - at) < 1e-9
        # Only the samples straddling a contact deviate from the constant speed.
        assert deviates.any(axis=1).sum() <= 2 * len(contacts)
        assert [t for t, _ in contacts] == sorted(t for t, _ in contacts)


@pytest.mark.parametrize("frames,fps", CONFIGS)
def test_av_clip_video_follows_the_motion_and_bounces_are_visible(frames, fps):
    height, width = 33, 29
    rng = np.random.default_rng(frames * 100 + int(fps))
    reversals_checked = 0
    for colour, shape, direction in shapes.train_combos()[::5]:
        clip = shapes_av.render_av_clip(colour, shape, direction, frames=frames, height=height,
                                        width=width, fps=fps, sample_rate=8000, rng=rng)
        assert clip.video.shape == (frames, height, width, 3) and clip.video.dtype == np.uint8
        rgb = np.asarray(shapes.COLOURS[colour], np.float64)
        coverage = clip.video.astype(np.float64) @ rgb / (rgb @ rgb)
        area = coverage.sum(axis=(1, 2))
        np.testing.assert_allclose(area, np.median(area), rtol=0.06)  # never clipped by the edge
        ys, xs = np.mgrid[:height, :width]
        centre = np.stack([(coverage * xs).sum(axis=(1, 2)), (coverage * ys).sum(axis=(1, 2))],
                          axis=1) / area[:, None]
        corner = clip.motion.position(np.arange(frames) / fps)
        np.testing.assert_allclose(centre - centre[0], corner - corner[0], atol=0.3)
        # It starts off in its labelled direction.
        axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[direction]
        assert sign * clip.motion.velocity[axis] > 0
        # At least one bounce, each within the frames shown, apart from the others, and seen in
        # the video as a reversal of the centroid between the frames around it.
        times = clip.bounce_times
        assert 1 <= len(times) <= shapes_av.MAX_BOUNCES
        assert times[0] >= 0.5 / fps - 1e-9 and times[-1] <= (frames - 1.5) / fps + 1e-9
        assert np.all(np.diff(times) >= max(1 / fps, 0.1) - 1e-9)
        steps = np.diff(centre, axis=0)
        for t, a in zip(times, clip.bounce_axes):
            i = int(np.floor(t * fps))  # the bounce lies between frames i and i + 1
            if 1 <= i < frames - 2:
                assert np.sign(steps[i - 1, a]) != np.sign(steps[i + 1, a])
                reversals_checked += 1
    assert reversals_checked >= 10


def test_tone_pitch_timbre_and_levels():
    notes = sorted(soundtrack.TONE_HZ.values())
    assert len(set(notes)) == len(shapes.COLOURS) == 6
    assert 200 <= notes[0] and notes[-1] <= 2000
    semitones = 12 * np.log2(np.asarray(notes) / notes[0])
    np.testing.assert_allclose(np.diff(semitones), 7.0)
    for note, other in itertools.permutations(notes, 2):  # harmonics stay clear of other notes
        for k in range(2, max(len(p) for p in soundtrack.SHAPE_PARTIALS.values()) + 1):
            assert abs(12 * np.log2(k * note / other)) > 1.9
    sample_rate, n = 16000, 16000
    for colour, shape in itertools.product(shapes.COLOURS, shapes.SHAPES):
        wave = soundtrack.tone(colour, shape, num_samples=n, sample_rate=sample_rate)
        assert wave.dtype == np.float32 and np.abs(wave).max() <= soundtrack.TONE_LEVEL + 1e-6
        # 1/8 Hz bins (zero-padded): partial amplitudes read off peaks without scalloping loss.
        spectrum = np.abs(np.fft.rfft(wave * np.hanning(n), n=8 * n))
        f0 = soundtrack.TONE_HZ[colour]
        assert abs(np.argmax(spectrum) / 8 - f0) <= 0.25
        for k, amplitude in enumerate(soundtrack.SHAPE_PARTIALS[shape], start=1):
            at = int(round(8 * k * f0))
            measured = spectrum[at - 8:at + 9].max() / spectrum.max()
            if k * f0 < 0.45 * sample_rate:
                assert measured == pytest.approx(amplitude, abs=0.01), (colour, shape, k)
            else:  # above the band kept for this sample rate: no aliased partial
                assert measured < 0.01
    # Faded in and out, so the tone's start and end make no click.
    wave = soundtrack.tone("red", "circle", num_samples=n, sample_rate=sample_rate)
    assert np.abs(wave[:20]).max() < 0.01 * soundtrack.TONE_LEVEL
    assert np.abs(wave[-20:]).max() < 0.01 * soundtrack.TONE_LEVEL
    with pytest.raises(ValueError, match="too low"):
        soundtrack.tone("magenta", "circle", num_samples=100, sample_rate=3000)


def test_clicks_start_at_the_exact_contact_and_decay():
    sample_rate = 8000
    rng = np.random.default_rng(3)
    for bounce in rng.uniform(0.05, 0.4, 10):
        wave = soundtrack.clicks([bounce], num_samples=4000, sample_rate=sample_rate, rng=rng)
        first = np.flatnonzero(wave)[0]
        assert first == int(np.ceil(bounce * sample_rate))  # the first sample at or after it
        t = np.arange(first, 4000) / sample_rate
        envelope = soundtrack.CLICK_LEVEL * np.exp(-(t - bounce) / soundtrack.CLICK_DECAY_S)
        assert np.all(np.abs(wave[first:]) <= envelope + 1e-6)
        decay = int(soundtrack.CLICK_DECAY_S * sample_rate)  # samples
        assert np.abs(wave[first:first + decay]).mean() > 0.2 * soundtrack.CLICK_LEVEL
        assert np.abs(wave[first + 5 * decay + 1:]).max() < np.exp(-5) * soundtrack.CLICK_LEVEL
    with pytest.raises(ValueError, match="outside"):
        soundtrack.clicks([0.6], num_samples=4000, sample_rate=sample_rate, rng=rng)


@pytest.mark.parametrize("frames,fps", CONFIGS)
def test_av_clip_soundtrack_is_the_tone_plus_clicks_at_the_bounces(frames, fps):
    sample_rate = 16000
    for i, combo in enumerate(shapes.all_combos()[::9]):
        clip = shapes_av.render_av_clip(*combo, frames=frames, height=20, width=23, fps=fps,
                                        sample_rate=sample_rate,
                                        rng=np.random.default_rng([7, i]))
        assert clip.audio.dtype == np.float32
        assert len(clip.audio) == round(frames / fps * sample_rate)
        assert np.abs(clip.audio).max() <= 1.0
        # Loud broadband energy only right after the bounces.
        loud = np.abs(clip.audio) > 1.5 * soundtrack.TONE_LEVEL
        expected = np.zeros(len(clip.audio), bool)
        for t in clip.bounce_times:
            start = int(np.ceil(t * sample_rate))
            expected[start:start + int(8 * soundtrack.CLICK_DECAY_S * sample_rate)] = True
            assert loud[start:start + int(0.003 * sample_rate)].any()
        assert not (loud & ~expected).any()


def test_av_clips_are_deterministic_and_captions_parse():
    kwargs = dict(frames=16, height=24, width=24, fps=8.0, sample_rate=8000)
    a = shapes_av.render_av_clip("cyan", "triangle", "up", rng=np.random.default_rng(5), **kwargs)
    b = shapes_av.render_av_clip("cyan", "triangle", "up", rng=np.random.default_rng(5), **kwargs)
    c = shapes_av.render_av_clip("cyan", "triangle", "up", rng=np.random.default_rng(6), **kwargs)
    np.testing.assert_array_equal(a.video, b.video)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.bounce_times, b.bounce_times)
    assert not np.array_equal(a.audio, c.audio) and not np.array_equal(a.video, c.video)
    rng = np.random.default_rng(0)
    texts = set()
    for combo in shapes.all_combos():
        for _ in range(10):
            text = shapes_av.av_caption(*combo, rng)
            assert shapes.parse_prompt(text) == combo, text
            texts.add(text)
        assert shapes.parse_prompt(shapes_av.canonical_av_caption(*combo)) == combo
    assert any("bounc" in t for t in texts) and len(texts) > 500
    with pytest.raises(ValueError):
        shapes_av.render_av_clip("red", "hexagon", "up", rng=rng, **kwargs)
    with pytest.raises(ValueError):
        shapes_av.render_av_clip("red", "circle", "sideways", rng=rng, **kwargs)


def test_held_out_av_clips_cover_every_held_out_combo():
    clips = shapes_av.held_out_av_clips(2, frames=8, height=16, width=17, fps=8.0,
                                        sample_rate=8000, seed=1)
    assert [combo for combo, _ in clips[::2]] == list(shapes.held_out_combos())
    assert not np.array_equal(clips[0][1].audio, clips[1][1].audio)
    again = shapes_av.held_out_av_clips(2, frames=8, height=16, width=17, fps=8.0,
                                        sample_rate=8000, seed=1)
    np.testing.assert_array_equal(clips[5][1].video, again[5][1].video)


def _read_all(data_dir):
    records = []
    for path in shapes_writer.shard_paths(data_dir):
        reader = ArrayRecordReader(path)
        records += [shapes_av_writer.decode_av_record(r) for r in reader.read_all()]
        reader.close()
    return records


def test_writer_round_trips_clips_into_shards(tmp_path):
    params = dict(num_clips=7, num_shards=3, frames=16, height=20, width=22, fps=8.0,
                  sample_rate=16000, seed=4)
    manifest = shapes_av_writer.write_shapes_av_dataset(tmp_path / "av", **params)
    assert manifest["format"] == shapes_av_writer.FORMAT_NAME
    assert [s["num_records"] for s in manifest["shards"]] == [2, 3, 2]
    assert manifest["num_samples"] == 32000 and manifest["max_bounces"] == shapes_av.MAX_BOUNCES
    assert manifest["tone_hz"] == soundtrack.TONE_HZ
    assert shapes_av_writer.load_av_manifest(tmp_path / "av") == manifest
    records = _read_all(tmp_path / "av")
    assert [r["index"] for r in records] == list(range(7))
    train = set(shapes.train_combos())
    for record in records:
        combo = (record["colour"], record["shape"], record["direction"])
        assert combo in train and shapes.parse_prompt(record["caption"]) == combo
        # The clip the writer drew for this index, rendered again here.
        rng = np.random.default_rng([4, record["index"]])
        assert shapes.train_combos()[rng.integers(len(train))] == combo
        shapes_av.av_caption(*combo, rng)
        clip = shapes_av.render_av_clip(*combo, frames=16, height=20, width=22, fps=8.0,
                                        sample_rate=16000, rng=rng)
        np.testing.assert_array_equal(record["video"], clip.video)
        assert record["audio"].dtype == np.float32 and record["audio"].shape == (32000,)
        np.testing.assert_allclose(record["audio"], clip.audio, atol=1 / 32767)
        assert record["sample_rate"] == 16000 and record["fps"] == 8.0
        n = int(record["num_bounces"])
        assert n == len(clip.bounce_times) and record["bounce_times"].shape == (
            shapes_av.MAX_BOUNCES,)
        np.testing.assert_allclose(shapes_av_writer.valid_bounce_times(record), clip.bounce_times,
                                   rtol=1e-6)
        assert np.isnan(record["bounce_times"][n:]).all()
    # Idempotent; other parameters or another format in the folder are refused.
    assert shapes_av_writer.write_shapes_av_dataset(tmp_path / "av", **params) == manifest
    with pytest.raises(ValueError, match="parameters"):
        shapes_av_writer.write_shapes_av_dataset(tmp_path / "av", **{**params, "sample_rate": 8000})
    shapes_writer.write_shapes_dataset(tmp_path / "video", num_clips=2, num_shards=1, frames=4,
                                       height=16, width=16, seed=0)
    with pytest.raises(ValueError, match="mgen_shapes_v1"):
        shapes_av_writer.write_shapes_av_dataset(tmp_path / "video", **params)
    with pytest.raises(ValueError, match="format"):
        shapes_av_writer.load_av_manifest(tmp_path / "video")


def test_grain_pipeline_batches_av_records(tmp_path):
    shapes_av_writer.write_shapes_av_dataset(tmp_path / "av", num_clips=6, num_shards=2,
                                             frames=8, height=16, width=17, fps=8.0,
                                             sample_rate=8000, seed=0)
    batches = iter(make_train_dataset(tmp_path / "av", batch_size=3, seed=0,
                                      decode=shapes_av_writer.decode_av_record))
    batch = next(batches)
    assert batch["video"].shape == (3, 8, 16, 17, 3) and batch["video"].dtype == np.uint8
    assert batch["audio"].shape == (3, 8000) and batch["audio"].dtype == np.float32
    assert batch["bounce_times"].shape == (3, shapes_av.MAX_BOUNCES)
    assert batch["num_bounces"].shape == (3,) and (batch["num_bounces"] >= 1).all()
    assert batch["caption"].shape == (3,) and batch["sample_rate"].tolist() == [8000] * 3
