"""The Beam graph of a data build (driver.py runs it):

  items -> Create -> Reshuffle -> Curate (read, decode, curate_media, encode the record)
             clips ──┬──> Hashes -> ToList -> Plan: one decision over every clip (selection.py)
                     └──> Place (the plan as a side input): dropped -> rejected;
                          kept -> ((bucket, shard, shards), record) -> GroupByKey -> WriteShard
  rejected (Curate's and Place's) -> WriteToText rejected*.jsonl
  shard infos (WriteShard's)      -> WriteToText shards*.jsonl      (both read by the driver)

Items are listed on the driver and read inside the workers; the Reshuffle spreads them over
the workers (Create alone would hand them all to one). The plan is a global side input: the
hashes are a few dozen bytes per clip, so even a million clips fit one worker (selection.py
says how dedup would be banded beyond that). Records are encoded before the shuffle, so the
clips cross it once, as the bytes that get written. The config travels as a JSON string and
every DoFn and function is defined at module level: Beam's multi-process and remote runners
pickle them.
"""
from __future__ import annotations

import json
import logging
import os

import apache_beam as beam

from data_pipelines.build.build_config import config_from_json
from data_pipelines.build.progress import ProgressCounter
from data_pipelines.build.selection import plan_clips
from data_pipelines.build.shard_writer import WriteShard
from data_pipelines.clip_records import encode_clip_record
from data_pipelines.curation.curate import curate_media
from data_pipelines.media.decode import MediaError

REJECTED = "rejected"  # the tag of rejections among a step's outputs
SHARDS_PREFIX = "shards"
REJECTED_PREFIX = "rejected"
# ((bucket, shard index, shard count), (source_id, item_id, record bytes))
ShardedRecord = tuple[tuple[str, int, int], tuple[str, str, bytes]]
# Reason of an item whose curation raised something other than MediaError (a bug or a codec
# failure nobody anticipated): one item must not stop a build over millions, so it is skipped
# and reported with the exception; driver.py fails the build when every item ends this way.
ERROR_REASON = "error"


def rejection(source_id: str, reason: str, detail: str) -> dict:
    return {"source_id": str(source_id), "reason": str(reason), "detail": str(detail)}


class CurateItem(beam.DoFn):
    """item -> clip elements {"source_id", "item_id", "bucket", "phash", "record"}, and
    rejections {"source_id", "reason", "detail"} on the REJECTED output."""

    def __init__(self, source, config_json: str, progress_dir: str | None):
        self.source, self.config_json = source, config_json
        self.progress = ProgressCounter(progress_dir)

    def setup(self):
        self.cfg = config_from_json(self.config_json)

    def process(self, item):
        try:
            clips, rejections = self._curate(item)
        except Exception as err:  # noqa: BLE001  (see ERROR_REASON)
            logging.exception("curating %s failed", item["id"])
            clips, rejections = [], [rejection(item["id"], ERROR_REASON,
                                               f"{type(err).__name__}: {err}")]
        for clip in clips:
            yield clip
        for rejected in rejections:
            yield beam.pvalue.TaggedOutput(REJECTED, rejected)
        self.progress.tick()

    def _curate(self, item):
        cfg, item_id = self.cfg, item["id"]
        caption, camera = self.source.caption(item, cfg)
        if caption is None and cfg.require_caption:  # before decoding: it needs no pixels
            return [], [rejection(item_id, "no_caption", "no caption in captions.jsonl / "
                                  ".csv, no sidecar text, no text feature")]
        try:
            media = self.source.decode(item, cfg)
        except MediaError as err:
            return [], [rejection(item_id, err.reason, err.detail)]
        curated, rejected = curate_media(item_id, media, caption, cfg, camera=camera)
        clips = [{"source_id": clip.source_id, "item_id": item_id, "bucket": clip.bucket,
                  "phash": clip.phash,
                  "record": encode_clip_record(
                      video=clip.video, caption=clip.caption, fps=clip.fps,
                      native_fps=clip.native_fps, source_id=clip.source_id, bucket=clip.bucket,
                      camera=clip.camera, store=cfg.store)}
                 for clip in curated]
        return clips, [rejection(r.source_id, r.reason, r.detail) for r in rejected]

    def teardown(self):
        self.progress.close()


def _plan(entries, config_json: str) -> dict:
    return plan_clips(entries, config_from_json(config_json))


def _place(clip, plan):
    """A clip -> ((bucket, shard index, shard count), (source_id, item_id, record)), or its
    rejection when the plan drops it."""
    source_id = clip["source_id"]
    if source_id in plan["drop"]:
        reason, detail = plan["drop"][source_id]
        yield beam.pvalue.TaggedOutput(REJECTED, rejection(source_id, reason, detail))
        return
    index, count = plan["shard"][source_id]
    yield (clip["bucket"], index, count), (source_id, clip["item_id"], clip["record"])


def _hash_entry(clip):
    return clip["source_id"], clip["bucket"], clip["phash"]


def add_build(pipeline, items: list[dict], source, config_json: str, *, out_dir: str,
              results_dir: str, progress_dir: str | None) -> None:
    """Add the build to `pipeline`: shards into out_dir; shard infos and rejections as
    JSON lines (SHARDS_PREFIX*, REJECTED_PREFIX*) into results_dir for the driver to read."""
    curated = (pipeline
               | "Items" >> beam.Create(items)
               | "Spread" >> beam.Reshuffle()
               | "Curate" >> beam.ParDo(CurateItem(source, config_json, progress_dir))
               .with_outputs(REJECTED, main="clips"))
    plan = (curated.clips
            | "Hashes" >> beam.Map(_hash_entry)
            | "AllHashes" >> beam.combiners.ToList()
            | "Plan" >> beam.Map(_plan, config_json))
    placed = (curated.clips
              | "Place" >> beam.FlatMap(_place, beam.pvalue.AsSingleton(plan))
              .with_output_types(ShardedRecord)  # a typed key: a deterministic key coder
              .with_outputs(REJECTED, main="kept"))
    shards = (placed.kept
              | "ByShard" >> beam.GroupByKey()
              | "WriteShards" >> beam.ParDo(WriteShard(out_dir)))
    rejected = (curated[REJECTED], placed[REJECTED]) | "AllRejected" >> beam.Flatten()
    for name, collection, prefix in (("Shard", shards, SHARDS_PREFIX),
                                     ("Rejected", rejected, REJECTED_PREFIX)):
        (collection
         | f"{name}Json" >> beam.Map(json.dumps, sort_keys=True)
         | f"{name}Write" >> beam.io.WriteToText(os.path.join(results_dir, prefix),
                                                 file_name_suffix=".jsonl"))
