"""Calibration of the audio-visual Shapes evaluator on ground truth, on ground truth degraded
the way a tiny generative model degrades it, and on wrong soundtracks."""
import functools

import numpy as np
import pytest
from scipy import ndimage, signal

from data_pipelines import shapes, shapes_av, soundtrack
from mgen_jax.evaluation import av_sync

SR = 16000
COLOURS = list(shapes.COLOURS)


@functools.lru_cache(maxsize=None)
def _clips(sample_rate=SR, count=24, frames=16, fps=8.0):
    """Ground-truth clips spread over every colour and shape (2 s each by default)."""
    combos = shapes.all_combos()
    return tuple(
        (combos[(7 * i) % len(combos)],
         shapes_av.render_av_clip(*combos[(7 * i) % len(combos)], frames=frames, height=16,
                                  width=16, fps=fps, sample_rate=sample_rate,
                                  rng=np.random.default_rng([1, i])))
        for i in range(count))


def _evaluate(transform, clips=None, sample_rate=SR):
    clips = clips or _clips()
    rng = np.random.default_rng(11)
    waves = [transform(combo, clip, rng) for combo, clip in clips]
    return av_sync.evaluate_soundtracks(waves, sample_rate, [c[0] for c, _ in clips],
                                        [clip.bounce_times for _, clip in clips])


# -- degradations ------------------------------------------------------------------------------

def _add_noise(x, snr_db, rng):
    power = np.mean(np.square(x, dtype=np.float64))
    return x + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(x))


def _lowpass(x, hz):
    return signal.sosfiltfilt(signal.butter(6, hz, fs=SR, output="sos"), x)


def _smear(x, rng, seconds=0.04):
    """What a 25 Hz latent does to a click: each STFT bin's power averaged over `seconds`
    (centred), steady bins keeping their phase and transient ones given random phase, so a click
    becomes a ~40 ms burst with no sharp peak left at its true time."""
    nperseg = 256
    hop = nperseg // 4
    _, _, z = signal.stft(x, fs=SR, nperseg=nperseg, noverlap=nperseg - hop)
    power = np.abs(z) ** 2
    smooth = np.maximum(ndimage.uniform_filter1d(power, round(seconds * SR / hop), axis=1), 0)
    steady = (power < 2 * smooth) & (power > smooth / 2)
    phase = np.where(steady, np.angle(z), 2 * np.pi * rng.uniform(size=z.shape))
    _, y = signal.istft(np.sqrt(smooth) * np.exp(1j * phase), fs=SR, nperseg=nperseg,
                        noverlap=nperseg - hop)
    return y[:len(x)]


def _jitter(x, rng, db=4.0, rate_hz=10.0):
    """A random gain, varying smoothly (new level every 1 / rate_hz s, std `db` dB)."""
    knots = rng.normal(0.0, db, int(len(x) / SR * rate_hz) + 2)
    gain_db = np.interp(np.arange(len(x)) / SR * rate_hz, np.arange(len(knots)), knots)
    return x * 10 ** (gain_db / 20)


def _soundtrack(combo, clip, rng, colour=None, bounces=None, frequency=None):
    """The clip's soundtrack re-synthesised with another colour, bounce list or pitch."""
    bounces = clip.bounce_times if bounces is None else bounces
    n = len(clip.audio)
    if frequency is None:
        wave = soundtrack.tone(colour or combo[0], combo[1], num_samples=n, sample_rate=SR)
    else:
        wave = soundtrack.TONE_LEVEL * np.sin(2 * np.pi * frequency * np.arange(n) / SR)
    return wave + soundtrack.clicks(bounces, num_samples=n, sample_rate=SR, rng=rng)


DEGRADATIONS = {
    "noise_10db": lambda co, c, r: _add_noise(c.audio, 10, r),
    "lowpass_2khz": lambda co, c, r: _lowpass(c.audio, 2000),
    "smear_40ms": lambda co, c, r: _smear(c.audio, r),
    "jitter_4db": lambda co, c, r: _jitter(c.audio, r),
    "smear_noise": lambda co, c, r: _add_noise(_smear(c.audio, r), 10, r),
    "smear_lowpass_jitter": lambda co, c, r: _jitter(_lowpass(_smear(c.audio, r), 2000), r),
    "all_mild": lambda co, c, r: _add_noise(_jitter(_smear(_lowpass(c.audio, 4000), r), r, db=3),
                                            15, r),
    "detuned_1_semitone": lambda co, c, r: _soundtrack(
        co, c, r, frequency=soundtrack.TONE_HZ[co[0]] * 2 ** (1 / 12)),
}


# -- tests -------------------------------------------------------------------------------------

def test_pitch_estimate_is_sub_bin_accurate_and_needs_a_clear_tone():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    low, high = av_sync.PITCH_BAND_HZ
    for frequency in rng.uniform(low * 1.05, high / 1.05, 20):
        estimate = av_sync.estimate_pitch(0.3 * np.sin(2 * np.pi * frequency * t + 1.0), SR)
        assert estimate == pytest.approx(frequency, abs=0.5)  # bins are 15.6 Hz wide
    for name, hz in soundtrack.TONE_HZ.items():
        assert av_sync.nearest_colour(hz * 2 ** (3.4 / 12)) == name
        assert av_sync.nearest_colour(hz * 2 ** (-3.4 / 12)) == name
    assert av_sync.estimate_pitch(np.zeros(SR), SR) is None
    assert av_sync.estimate_pitch(rng.normal(0, 0.3, SR), SR) is None
    # A tone outside the colours' band is not taken for the nearest colour.
    assert av_sync.classify_pitch(0.3 * np.sin(2 * np.pi * 4000 * t), SR) is None


def test_onsets_are_found_at_clicks_and_nowhere_else():
    rng = np.random.default_rng(1)
    times = np.array([0.1234, 0.5, 0.777, 1.6])
    wave = soundtrack.clicks(times, num_samples=2 * SR, sample_rate=SR, rng=rng)
    wave = wave + soundtrack.tone("green", "square", num_samples=2 * SR, sample_rate=SR)
    onsets = av_sync.detect_onsets(wave, SR)
    assert len(onsets) == len(times)
    np.testing.assert_allclose(onsets, times, atol=0.008)
    offsets = av_sync.onset_offsets(times, onsets)
    np.testing.assert_allclose(offsets, onsets - times)
    assert np.isinf(av_sync.onset_offsets(times, [])).all()
    for steady in (np.zeros(2 * SR), rng.normal(0, 0.2, 2 * SR),
                   soundtrack.tone("blue", "triangle", num_samples=2 * SR, sample_rate=SR)):
        assert len(av_sync.detect_onsets(steady, SR)) == 0


@pytest.mark.parametrize("sample_rate,count", [(16000, 24), (48000, 6)])
def test_ground_truth_scores_perfectly(sample_rate, count):
    result = _evaluate(lambda co, c, r: c.audio, _clips(sample_rate, count), sample_rate)
    assert result["pitch_accuracy"] == 1.0
    assert result["median_onset_offset_ms"] <= 10.0
    assert result["missed_bounces"] == 0.0 and result["onsets_per_bounce"] == 1.0
    assert all(abs(o) <= 10.0 for clip in result["clips"] for o in clip["offsets_ms"])
    assert result["onset_chance_ms"] > 150.0  # random onsets in a 2 s clip


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_degraded_ground_truth_still_scores(name):
    result = _evaluate(DEGRADATIONS[name])
    assert result["pitch_accuracy"] == 1.0
    assert result["median_onset_offset_ms"] <= 15.0
    assert result["missed_bounces"] == 0.0
    assert 0.9 <= result["onsets_per_bounce"] <= 1.1


def _shifted(clip, seconds=0.2):
    """Each bounce moved 200 ms later (earlier where later would leave the clip)."""
    duration = len(clip.audio) / SR
    return np.array([t + seconds if t + seconds < duration - 0.05 else t - seconds
                     for t in clip.bounce_times])


WRONG = {
    "other_colour": lambda co, c, r: _soundtrack(
        co, c, r, colour=COLOURS[(COLOURS.index(co[0]) + 1) % len(COLOURS)]),
    "silence": lambda co, c, r: np.zeros_like(c.audio),
    "white_noise": lambda co, c, r: r.normal(0.0, 0.2, len(c.audio)),
    "clicks_shifted_200ms": lambda co, c, r: _soundtrack(co, c, r, bounces=_shifted(c)),
    "clicks_at_random": lambda co, c, r: _soundtrack(co, c, r, bounces=np.sort(
        r.uniform(0.05, len(c.audio) / SR - 0.05, len(c.bounce_times)))),
    "tone_only": lambda co, c, r: _soundtrack(co, c, r, bounces=[]),
    "clicks_only": lambda co, c, r: soundtrack.clicks(c.bounce_times, num_samples=len(c.audio),
                                                      sample_rate=SR, rng=r),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_soundtracks_fail(name):
    result = _evaluate(WRONG[name])
    pitch_right = name in ("clicks_shifted_200ms", "clicks_at_random", "tone_only")
    onsets_right = name in ("other_colour", "clicks_only")
    assert result["pitch_accuracy"] == (1.0 if pitch_right else 0.0)
    if onsets_right:
        assert result["median_onset_offset_ms"] <= 10.0
    else:
        assert result["median_onset_offset_ms"] >= 150.0  # acceptance asks for <= 80 ms
    if name in ("silence", "white_noise", "tone_only"):
        assert result["missed_bounces"] == 1.0 and np.isinf(result["median_onset_offset_ms"])


def test_chance_levels_are_computed():
    # One bounce in the middle of a clip of length D, one random onset: |offset| is uniform on
    # [0, D / 2], so its median is D / 4.
    rng = np.random.default_rng(2)
    offsets = av_sync.random_onset_offsets([1.0], 2.0, rng, draws=20000)
    assert np.median(np.abs(offsets)) == pytest.approx(0.5, rel=0.03)
    waves = [soundtrack.tone(c, "circle", num_samples=SR, sample_rate=SR)
             for c in ("red", "red", "red", "blue")]
    result = av_sync.evaluate_soundtracks(waves, SR, ["red", "red", "red", "blue"],
                                          [[0.5]] * 4, chance_draws=2000)
    assert result["pitch_chance"] == 0.75 and result["pitch_chance_uniform"] == 1 / 6
    assert result["onset_chance_ms"] == pytest.approx(250.0, rel=0.05)
    assert result["pitch_accuracy"] == 1.0 and result["count"] == 4 and result["bounces"] == 4


def test_evaluate_rejects_bad_input():
    wave = np.zeros(SR)
    with pytest.raises(ValueError, match="one of each"):
        av_sync.evaluate_soundtracks([wave], SR, ["red", "blue"], [[0.5]])
    with pytest.raises(ValueError, match="colour"):
        av_sync.evaluate_soundtracks([wave], SR, ["pink"], [[0.5]])
    with pytest.raises(ValueError, match="non-finite"):
        av_sync.evaluate_soundtracks([np.full(SR, np.nan)], SR, ["red"], [[0.5]])
    with pytest.raises(ValueError, match="mono"):
        av_sync.detect_onsets(np.zeros((2, SR)), SR)


def test_clicking_all_the_time_is_exposed():
    # Clicks every 100 ms land within 50 ms of every bounce; the reverse offsets and the onset
    # count give it away.
    result = _evaluate(lambda co, c, r: _soundtrack(
        co, c, r, bounces=np.arange(0.05, len(c.audio) / SR - 0.05, 0.1)))
    assert result["onsets_per_bounce"] > 3.0
    assert result["median_click_offset_ms"] > 80.0
    truth = _evaluate(lambda co, c, r: c.audio)
    assert truth["median_click_offset_ms"] <= 10.0
