"""Audio files for generated sound: 16-bit PCM .wav, and mp4s with an H.264 video stream and an
AAC audio stream muxed by PyAV.

Waveforms are float arrays in [-1, 1], [C, T] (or [T] for mono on the way in); readers always
return float32 [C, T] and the sample rate.

  * .wav is written as 16-bit PCM by the standard library's `wave` module. Samples are
    quantised as round(x * 32768), clipped to the int16 range, and read back as k / 32768, so a
    waveform already on that grid survives the round trip exactly. Other .wav sample formats are
    read through FFmpeg (PyAV).
  * mp4s reuse video_io's H.264 stream; the AAC stream takes the audio in chunks of one video
    frame's duration, each muxed right after its video frame, so packets go to the file
    interleaved in time (players stream it without seeking back and forth). AAC codes in frames of
    1024 samples and the encoder adds a frame of priming; the mp4's edit list hides the priming,
    but the decoded audio may run up to one AAC frame past the video's end (end padding).
"""
from __future__ import annotations

import os
import wave
from fractions import Fraction
from math import gcd

import av
import numpy as np
import scipy.signal

from mgen_jax.inference.video_io import add_h264_stream, as_video, frame_rate, rgb_frames

_LAYOUTS = {1: "mono", 2: "stereo"}
MP4_SAMPLE_RATE = 48000  # Movie Gen Audio's rate: sampled mp4s carry it whatever the model's


def _as_waveform(waveform) -> np.ndarray:
    """[T] or [C, T] float -> float32 [C, T] in [-1, 1] (clipped); refuses NaN / inf."""
    waveform = np.asarray(waveform)
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2 or not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(f"expected a float waveform [T] or [C, T], got {waveform.dtype} "
                         f"{waveform.shape}")
    if not np.all(np.isfinite(waveform)):
        raise ValueError("waveform has NaN or infinite samples")
    return np.clip(waveform, -1.0, 1.0).astype(np.float32)


def to_sample_rate(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy) along the last axis, e.g. the tiny model's 16 kHz to the
    mp4's 48 kHz."""
    g = gcd(int(rate), int(target))
    return scipy.signal.resample_poly(waveform, target // g, rate // g, axis=-1).astype(np.float32)


def write_wav(path: str | os.PathLike, waveform, sample_rate: int) -> None:
    """Write a float waveform [T] or [C, T] in [-1, 1] as 16-bit PCM .wav."""
    waveform = _as_waveform(waveform)
    pcm = np.clip(np.round(waveform * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(waveform.shape[0])
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.T.tobytes())  # frames interleave the channels


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A .wav as (float32 [C, T], sample rate). 16-bit PCM (what write_wav writes) is read by
    the standard library as k / 32768; other sample formats (8/24/32-bit, float, and the
    WAVE_FORMAT_EXTENSIBLE header FFmpeg writes for them, which `wave` refuses before Python
    3.12) are decoded by FFmpeg through `read_audio`."""
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            data = f.readframes(f.getnframes()) if width == 2 else None
    except wave.Error:
        data = None
    if data is None:
        return read_audio(path)
    ints = np.frombuffer(data, "<i2").reshape(-1, channels).T
    return ints.astype(np.float32) / np.float32(32768.0), rate


def _match_video_length(audio: np.ndarray, num_frames: int, rate: Fraction, sample_rate: int
                        ) -> np.ndarray:
    """Trim or pad (with silence) the audio to the video's duration; a difference of more than
    one video frame is almost surely a wrong sample rate or fps, and is refused."""
    target = round(num_frames * sample_rate / rate)
    if abs(audio.shape[1] - target) > sample_rate / rate:
        raise ValueError(f"audio of {audio.shape[1]} samples at {sample_rate} Hz "
                         f"({audio.shape[1] / sample_rate:.3f} s) does not fit a video of "
                         f"{num_frames} frames at {float(rate):g} fps "
                         f"({target / sample_rate:.3f} s)")
    if audio.shape[1] >= target:
        return audio[:, :target]
    return np.pad(audio, ((0, 0), (0, target - audio.shape[1])))


def _audio_chunk(audio: np.ndarray, start: int, end: int, sample_rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:end]), format="fltp",
                                       layout=_LAYOUTS[audio.shape[0]])
    frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
    return frame


def write_mp4_with_audio(path: str | os.PathLike, video: np.ndarray, fps, audio,
                         sample_rate: int = 48000, *, scale: int = 1, crf: int = 18,
                         audio_bitrate: int = 192_000) -> None:
    """One mp4: uint8 video [T, H, W, 3] at `fps` as H.264 (as video_io.write_mp4, with its
    `scale` and `crf`) and float audio [C, T_a] (C = 1 or 2; [T_a] is mono) in [-1, 1] at
    `sample_rate` as AAC. The audio is trimmed or padded with silence to the video's duration
    T / fps; more than one video frame's difference raises a ValueError."""
    video = as_video(video)
    audio, sample_rate = _as_waveform(audio), int(sample_rate)
    if audio.shape[0] not in _LAYOUTS:
        raise ValueError(f"audio has {audio.shape[0]} channels; AAC here is mono or stereo")
    rate = frame_rate(fps)
    audio = _match_video_length(audio, video.shape[0], rate, sample_rate)
    with av.open(str(path), mode="w") as container:
        video_stream, frames = add_h264_stream(container, video, fps, scale=scale, crf=crf)
        audio_stream = container.add_stream("aac", rate=sample_rate,
                                            layout=_LAYOUTS[audio.shape[0]])
        audio_stream.bit_rate = int(audio_bitrate)
        done = 0
        for index, frame in enumerate(rgb_frames(frames, video_stream)):
            container.mux(video_stream.encode(frame))
            # The audio up to this video frame's end (PyAV re-chunks it into AAC frames).
            end = round((index + 1) * sample_rate / rate)
            if end > done:
                container.mux(audio_stream.encode(_audio_chunk(audio, done, end, sample_rate)))
                done = end
        container.mux(video_stream.encode())  # flush both encoders
        container.mux(audio_stream.encode())


def read_audio(path: str | os.PathLike, stream: int = 0) -> tuple[np.ndarray, int]:
    """Decode audio stream `stream` of any file PyAV reads (mp4/AAC, wav, ...) to
    (float32 [C, T], sample rate)."""
    with av.open(str(path)) as container:
        if len(container.streams.audio) <= stream:
            raise ValueError(f"{path} has {len(container.streams.audio)} audio stream(s), "
                             f"no stream {stream}")
        to_float = av.AudioResampler(format="fltp")  # keeps the layout and rate
        chunks, rate = [], container.streams.audio[stream].codec_context.sample_rate
        for frame in container.decode(audio=stream):
            chunks += [f.to_ndarray() for f in to_float.resample(frame)]
        chunks += [f.to_ndarray() for f in to_float.resample(None)]
    if not chunks:
        raise ValueError(f"{path}: audio stream {stream} decodes to no samples")
    return np.concatenate(chunks, axis=1).astype(np.float32), rate
