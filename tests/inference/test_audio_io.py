"""Audio files: exact 16-bit .wav round trips, .wav written by another encoder (FFmpeg through
PyAV) read back, and mp4s with H.264 + AAC muxed by PyAV decoding back to the right frames, a
48 kHz audio stream of the video's length, the tones' pitch and their onset in sync."""
from fractions import Fraction

import av
import numpy as np
import pytest

from mgen_jax.inference.audio_io import read_audio, read_wav, write_mp4_with_audio, write_wav
from mgen_jax.inference.video_io import read_mp4

SR = 48000
AAC_FRAME = 1024


def _tone(freq, seconds, sample_rate=SR, amplitude=0.5):
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _peak_hz(x, sample_rate=SR):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * sample_rate / len(x), sample_rate / len(x)  # peak, bin width


def _video(frames, height=33, width=45):
    t = np.arange(frames)[:, None, None, None]
    y, x = np.mgrid[:height, :width]
    rgb = 128 + 90 * np.sin(0.2 * x[..., None] + 0.3 * t + np.arange(3) + 0.1 * y[..., None])
    return rgb.round().astype(np.uint8)


@pytest.mark.parametrize("channels", [None, 1, 2])
def test_wav_round_trip_is_exact_for_16_bit_samples(tmp_path, channels):
    rng = np.random.default_rng(channels or 0)
    shape = (1001,) if channels is None else (channels, 1001)
    ints = rng.integers(-32768, 32768, shape)
    ints.flat[:2] = (-32768, 32767)  # both ends of the range
    waveform = (ints / 32768.0).astype(np.float32)
    write_wav(tmp_path / "a.wav", waveform, 22050)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050 and back.dtype == np.float32
    np.testing.assert_array_equal(back, waveform.reshape(-1, 1001))
    # FFmpeg (through PyAV) reads the same file to the same samples.
    decoded, rate = read_audio(tmp_path / "a.wav")
    assert rate == 22050
    np.testing.assert_array_equal(decoded, back)


def test_wav_clips_and_refuses_bad_input(tmp_path):
    write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5]), 8000)
    back, _ = read_wav(tmp_path / "loud.wav")
    np.testing.assert_array_equal(back, [[32767 / 32768, -1.0, 0.5]])
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]), 8000)
    with pytest.raises(ValueError, match="float waveform"):
        write_wav(tmp_path / "int.wav", np.array([1, 2, 3]), 8000)


@pytest.mark.parametrize("codec,step", [("pcm_u8", 2 ** -7), ("pcm_s24le", 2 ** -23),
                                        ("pcm_s32le", 2 ** -31)])
def test_read_wav_of_other_pcm_widths(tmp_path, codec, step):
    """A stereo .wav written by FFmpeg's own PCM encoders reads back to the tone."""
    tone = np.stack([_tone(440, 0.1, 16000), -_tone(440, 0.1, 16000, 0.25)]).astype(np.float32)
    path = str(tmp_path / f"{codec}.wav")
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=16000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 16000, 0, Fraction(1, 16000)
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    back, rate = read_wav(path)
    assert rate == 16000 and back.shape == tone.shape
    assert np.abs(back - tone).max() <= step


@pytest.fixture(scope="module")
def av_clip(tmp_path_factory):
    """20 frames at 12 fps with a stereo track: silence, then from frame 10 a 440 Hz tone on the
    left and a 1000 Hz tone on the right."""
    frames, fps = 20, 12
    seconds = frames / fps
    onset = 10 / fps
    audio = np.stack([_tone(440, seconds), _tone(1000, seconds, amplitude=0.3)])
    audio[:, :round(onset * SR)] = 0.0
    path = tmp_path_factory.mktemp("av") / "clip.mp4"
    video = _video(frames)
    write_mp4_with_audio(path, video, fps, audio.astype(np.float32), SR)
    return path, video, fps, onset


def test_mp4_has_h264_video_and_48khz_aac_of_the_videos_length(av_clip):
    path, video, fps, _ = av_clip
    with av.open(str(path)) as container:
        (v,), (a,) = container.streams.video, container.streams.audio
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
        assert (a.codec_context.sample_rate, a.codec_context.channels) == (SR, 2)
        assert v.average_rate == fps
        video_seconds = float(v.duration * v.time_base)
        audio_seconds = float(a.duration * a.time_base)
        assert sum(1 for _ in container.decode(video=0)) == len(video)
    assert abs(video_seconds - len(video) / fps) < 1e-6
    decoded, rate = read_audio(path)
    print(f"video {video_seconds:.4f} s; audio stream {audio_seconds:.4f} s, decoded "
          f"{decoded.shape[1] / rate:.4f} s")
    assert rate == SR and decoded.shape[0] == 2
    assert abs(audio_seconds - video_seconds) <= AAC_FRAME / SR
    assert abs(decoded.shape[1] / rate - video_seconds) <= AAC_FRAME / SR
    frames = read_mp4(path)  # and the picture survives as in a video-only mp4
    assert frames.shape == video.shape
    assert np.abs(frames.astype(np.int16) - video).mean() < 6.0


def test_aac_keeps_pitch_and_onset(av_clip):
    path, _, _, onset = av_clip
    decoded, _ = read_audio(path)
    start = round((onset + 0.05) * SR)
    window = decoded[:, start:start + SR // 2]  # 0.5 s of steady tone
    for channel, freq in ((0, 440), (1, 1000)):
        peak, bin_width = _peak_hz(window[channel])
        print(f"channel {channel}: {freq} Hz tone decodes with its FFT peak at {peak:.1f} Hz")
        assert abs(peak - freq) <= bin_width
    # The encoder's priming is hidden again: the tone starts when the picture says it does.
    envelope = np.abs(decoded[0])
    measured = np.argmax(envelope > 0.25) / SR
    print(f"tone onset: written {onset * 1000:.1f} ms, decoded {measured * 1000:.1f} ms")
    assert abs(measured - onset) <= 0.005
    assert envelope[:round((onset - 0.03) * SR)].max() < 0.05  # silence before stays silent


def test_mp4_packets_are_interleaved_in_time(av_clip):
    path = av_clip[0]
    with av.open(str(path)) as container:
        order = [(p.stream.type, float(p.dts * p.time_base)) for p in container.demux()
                 if p.dts is not None]
    kinds = [kind for kind, _ in order]
    assert kinds.count("video") == 20 and kinds.count("audio") >= 20 * SR / 12 / AAC_FRAME
    # In file order, time never steps back by more than one video frame across the streams.
    latest, worst = -np.inf, 0.0
    for _, seconds in order:
        worst = max(worst, latest - seconds)
        latest = max(latest, seconds)
    print(f"largest step back in time between consecutive packets: {worst * 1000:.1f} ms")
    assert worst <= 1 / 12


def test_mp4_audio_length_and_layout(tmp_path):
    video = _video(6, 16, 16)  # 0.25 s at 24 fps
    # Mono [T] audio half a frame short: padded with silence to the video's length.
    write_mp4_with_audio(tmp_path / "mono.mp4", video, 24, _tone(300, 0.24), SR)
    decoded, rate = read_audio(tmp_path / "mono.mp4")
    assert decoded.shape[0] == 1 and abs(decoded.shape[1] / rate - 0.25) <= AAC_FRAME / SR
    with pytest.raises(ValueError, match="does not fit a video of 6 frames at 24 fps"):
        write_mp4_with_audio(tmp_path / "long.mp4", video, 24, _tone(300, 0.35), SR)
    with pytest.raises(ValueError, match="mono or stereo"):
        write_mp4_with_audio(tmp_path / "six.mp4", video, 24, np.zeros((6, 12000)), SR)
    from mgen_jax.inference.video_io import write_mp4
    write_mp4(tmp_path / "silent.mp4", video)
    with pytest.raises(ValueError, match="0 audio stream"):
        read_audio(tmp_path / "silent.mp4")


def test_resampling_to_the_mp4_rate_keeps_pitch_and_duration():
    from mgen_jax.inference.audio_io import MP4_SAMPLE_RATE, to_sample_rate
    rate, hz = 16000, 523.25
    tone = np.sin(2 * np.pi * hz * np.arange(rate) / rate).astype(np.float32)
    up = to_sample_rate(tone, rate, MP4_SAMPLE_RATE)
    assert up.shape == (MP4_SAMPLE_RATE,) and up.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(up * np.hanning(len(up))))
    assert abs(np.argmax(spectrum) * MP4_SAMPLE_RATE / len(up) - hz) < 2.0
