"""`mgen data build`: a Movie Gen-style curation pipeline on Apache Beam, from a source
(sources.py) through decoding and curation (data_pipelines/media, data_pipelines/curation),
near-duplicate removal and sharding (selection.py) to ArrayRecord shards, manifest.json and
report.json (data_pipelines/clip_records.py). Entry point: driver.build_dataset."""
