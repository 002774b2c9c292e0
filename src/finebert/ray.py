"""Scoring on a Ray cluster: Ray Data's map_batches over an actor pool, each actor loading the model once.

    import finebert.ray
    scored = finebert.ray.predict("s3://bucket/reviews.parquet", "model/", actors=8)   # or a ray.data.Dataset
    scored.write_parquet("s3://bucket/scored/")

Each actor loads the fastest validated engine (Classifier.load) once and scores batch after batch; the
result is a Ray Dataset with the input columns and `predicted_label`, `confidence` and one `p_<label>`
column per class, as `finebert predict --output` writes them. It runs on whatever Ray cluster
`ray.init()` reaches: a local one by default, an existing one with `ray.init(address="auto")` on one of
its nodes (or RAY_ADDRESS=ray://head:10001). The model folder must be readable by every node (a
shared file system, or copy it to the same path on each). The actors must leave a CPU free for Ray
Data to read blocks (actors x cpus_per_actor below the cluster's CPUs), or nothing would ever run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from finebert.errors import ConfigError, MissingExtraError
from finebert.streaming import prediction_columns


class _Scorer:
    """One Ray actor: the model, loaded once, scoring batches (dicts of numpy columns)."""

    def __init__(self, model: str, engine: str, text_column: str, pair_column: str | None):
        from finebert.inference import Classifier

        self.classifier = Classifier.load(model, engine=engine)
        self.text_column, self.pair_column = text_column, pair_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        pairs = [str(t) for t in batch[self.pair_column]] if self.pair_column else None
        out = self.classifier.outputs(texts, pairs)
        for name, values in prediction_columns(self.classifier.label_space, out).items():
            if isinstance(values, list):  # label names: one object per row, a list of labels included
                column = np.empty(len(values), dtype=object)
                for i, value in enumerate(values):
                    column[i] = value
                values = column
            batch[name] = values
        return batch


def predict(data, model: str | Path, *, engine: str = "auto", text_column: str | None = None,
            text_pair_column: str | None = None, actors: int = 1, batch_size: int = 256,
            cpus_per_actor: float = 1.0):
    """A Ray Dataset of `data` (a ray.data.Dataset, or the path of a .csv, .jsonl or .parquet file or folder)
    with predictions added. Lazy, as Ray Data is: write it (write_parquet) or iterate it to run it."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray") from None
    from finebert.data import TEXT_COLUMNS
    from finebert.model_folder import read_info

    info = read_info(model)  # a clear error here, not inside an actor
    if not ray.is_initialized():
        ray.init()
    cpus = ray.cluster_resources().get("CPU", 0)
    if actors * cpus_per_actor >= cpus:  # the actors would take every CPU and Ray Data could never read a block
        raise ConfigError(f"actors={actors} x cpus_per_actor={cpus_per_actor} takes all {cpus:g} CPUs of the Ray "
                          "cluster, leaving none to read the data; use fewer actors or a smaller cpus_per_actor")
    dataset = data if isinstance(data, ray.data.Dataset) else _read(ray, Path(data))
    columns = dataset.columns()
    lowered = {c.lower(): c for c in columns}
    candidates = [text_column] if text_column else [info.config.text_column, *TEXT_COLUMNS]
    found = next((lowered[c.lower()] for c in candidates if c and c.lower() in lowered), None)
    if found is None:
        raise ConfigError(f"no text column among {', '.join(columns)}; pass text_column=")
    pair = text_pair_column or info.config.text_pair_column
    if pair is not None and pair not in columns:
        raise ConfigError(f"no column {pair!r} for the second texts among {', '.join(columns)}; pass text_pair_column=")
    return dataset.map_batches(_Scorer, fn_constructor_kwargs={"model": str(Path(model).resolve()), "engine": engine,
                                                               "text_column": found, "pair_column": pair},
                               batch_size=batch_size, batch_format="numpy", concurrency=actors, num_cpus=cpus_per_actor)


def _read(ray, path: Path):
    suffix = path.suffix.lower() if path.is_file() else next((p.suffix.lower() for p in path.iterdir()), "")
    readers = {".csv": ray.data.read_csv, ".parquet": ray.data.read_parquet, ".jsonl": ray.data.read_json,
               ".json": ray.data.read_json}
    if suffix not in readers:
        raise ConfigError(f"{path}: Ray reads .csv, .jsonl and .parquet here; give one of those, or a ray.data.Dataset")
    return readers[suffix](str(path))
