#!/usr/bin/env python3
"""Reference accuracy and speed numbers for fedcredit's comparisons on default_credit.

Computes, with scikit-learn / LightGBM / XGBoost, the numbers that fedcredit's own
models are compared against (see benches/reference/README.md):

* vertical data (hetero guest + host joined 1:1 on `id`, 30000 x 23; label `y` held by
  the guest), and each party's columns alone, on

  - fedcredit's cross-language split "fedcredit-split-v1" (test fraction 0.2, seed 42),
    the split every fedcredit runner uses, and
  - scikit-learn's train_test_split(test_size=0.2, stratify=y, random_state=42), for
    orientation only;

* models: `logistic`, `binned_lr`, `qcut_onehot_lr`, `woe_lr`, `lightgbm` (parameters
  matched to fedcredit's GBDT defaults), `lightgbm_default`, `xgboost`; metrics AUC, KS,
  log loss, wall-clock training seconds;

* single-thread GBDT fit timing (median of 7) for the local GBDT speed bar;

* horizontal data: train on the three homo files pooled (and on each alone), evaluate on
  default_credit_homo_test.csv.

With --applications, instead: references on a generated credit-application table with
high-cardinality text columns (`fedcredit data applications`, run by this script so the
recorded generator settings and the table agree): scikit-learn logistic regression on
exactly fedcredit's encoding (mean imputation + missing indicators + z-scores; one-hot with
levels seen fewer than 50 times pooled into one column that also takes unseen levels, plus a
missing column), LightGBM matched with the text columns as categoricals (its own categorical
binning) and with fedcredit's 255-bin categorical binning (the 254 most frequent training
levels and one "other" level), and single-thread fit times on the whole table.

Usage (from the repository root):

    python3 benches/reference/make_reference.py \
        --data-dir ../shared/datasets/default_credit \
        --out benches/reference/default_credit.json

    python3 benches/reference/make_reference.py --applications applications_50k \
        --fedcredit target/release/fedcredit --rows 50000 --numeric 39 --text 13 --seed 7 \
        --out benches/reference/applications_50k.json

The split definition (identical in Rust, fedcredit-datasets):
    key(id) = first 8 bytes, big-endian u64, of
              SHA-256(b"fedcredit-split-v1" || seed as u64 LE (8 bytes) || id UTF-8)
    for each class c: rows with label c sorted by (key, id string);
    n_test_c = floor(test_fraction * n_c + 0.5); the first n_test_c are test rows.
    Both index lists are returned in ascending row order.
"""

import os

# Must be set before lightgbm / xgboost (and their OpenMP runtimes) are imported, so that
# idle OpenMP workers do not spin and distort single-thread timings.
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import lightgbm  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse  # noqa: E402
import sklearn  # noqa: E402
import xgboost  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score, roc_curve  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler  # noqa: E402

SPLIT_KIND = "fedcredit-split-v1"
TEST_FRACTION = 0.2
SEED = 42
TIMING_RUNS = 7

GUEST = "default_credit_hetero_guest"
HOST = "default_credit_hetero_host"
HOMO_TRAIN = [
    "default_credit_homo_guest",
    "default_credit_homo_host_1",
    "default_credit_homo_host_2",
]
HOMO_TEST = "default_credit_homo_test"

# --------------------------------------------------------------------------------------
# The cross-language split
# --------------------------------------------------------------------------------------


def split_key(id_str: str, seed: int) -> int:
    """First 8 bytes (big-endian u64) of SHA-256(tag || seed LE u64 || id UTF-8)."""
    h = hashlib.sha256(SPLIT_KIND.encode() + seed.to_bytes(8, "little") + id_str.encode("utf-8"))
    return int.from_bytes(h.digest()[:8], "big")


def fedcredit_split(ids, labels, test_fraction: float, seed: int):
    """Return (train_idx, test_idx): 0-based row positions, each ascending."""
    ids = [str(i) for i in ids]
    labels = [int(v) for v in labels]
    if len(ids) != len(labels):
        raise ValueError("ids and labels differ in length")
    test = []
    for c in (0, 1):
        rows = [r for r in range(len(ids)) if labels[r] == c]
        rows.sort(key=lambda r: (split_key(ids[r], seed), ids[r]))
        n_test = math.floor(test_fraction * len(rows) + 0.5)
        test.extend(rows[:n_test])
    test_set = set(test)
    train = [r for r in range(len(ids)) if r not in test_set]
    return np.array(train, dtype=np.int64), np.array(sorted(test), dtype=np.int64)


TEST_VECTOR = {
    "ids": [str(i) for i in range(1, 11)],
    "labels": [0, 1, 0, 1, 0, 0, 1, 0, 0, 0],
    "test_fraction": 0.3,
    "seed": 42,
}

# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


def metrics(y_true, p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    fpr, tpr, _ = roc_curve(y_true, p)
    return {
        "auc": float(roc_auc_score(y_true, p)),
        "ks": float(np.max(tpr - fpr)),
        "log_loss": float(log_loss(y_true, p, labels=[0, 1])),
    }


# --------------------------------------------------------------------------------------
# Models. Each builder returns (fit(X, y) -> predict_proba(X) callable, params dict).
# --------------------------------------------------------------------------------------

LOGISTIC_PARAMS = {
    "preprocess": "StandardScaler (fit on train)",
    "C": 1.0,
    "penalty": "l2",
    "solver": "lbfgs",
    "max_iter": 10000,
    "tol": 1e-8,
    "fit_intercept": True,
}

BINNED_LR_PARAMS = {
    "preprocess": "sklearn KBinsDiscretizer (fit on train; left-closed bins [a, b), duplicate "
    "edges dropped)",
    "n_bins": 10,
    "encode": "onehot",
    "strategy": "quantile",
    "quantile_method": "averaged_inverted_cdf",
    "C": 1.0,
    "penalty": "l2",
    "solver": "lbfgs",
    "max_iter": 10000,
    "tol": 1e-8,
    "fit_intercept": True,
}

_QCUT = (
    "per feature: pandas.qcut(train column, 10, duplicates='drop'); outer edges replaced by "
    "-inf/+inf; right-closed bins (a, b]"
)

QCUT_ONEHOT_LR_PARAMS = {
    "preprocess": _QCUT + "; one-hot of the bin index (all bins, no column dropped)",
    "n_bins": 10,
    "C": 1.0,
    "penalty": "l2",
    "solver": "lbfgs",
    "max_iter": 10000,
    "tol": 1e-8,
    "fit_intercept": True,
}

WOE_LR_PARAMS = {
    "preprocess": _QCUT + "; value -> WOE of its bin (computed on train)",
    "n_bins": 10,
    "woe": "ln(((n0_b + 0.5) / N0) / ((n1_b + 0.5) / N1)); 0 = non-default, 1 = default",
    "smoothing": 0.5,
    "C": 1.0,
    "penalty": "l2",
    "solver": "lbfgs",
    "max_iter": 10000,
    "tol": 1e-8,
    "fit_intercept": True,
}

LIGHTGBM_PARAMS = {
    "n_estimators": 100,
    "learning_rate": 0.1,
    "num_leaves": 32,
    "max_depth": 5,
    "min_child_samples": 20,
    "min_child_weight": 1e-3,
    "reg_lambda": 0.0,
    "max_bin": 255,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "num_threads": 1,
    "verbose": -1,
    "random_state": 42,
}

LIGHTGBM_DEFAULT_PARAMS = {"num_threads": 1, "verbose": -1}

XGBOOST_PARAMS = {
    "n_estimators": 100,
    "learning_rate": 0.1,
    "max_depth": 5,
    "tree_method": "hist",
    "grow_policy": "depthwise",
    "max_bin": 255,
    "reg_lambda": 0.0,
    "min_child_weight": 1e-3,
    "nthread": 1,
    "random_state": 42,
}


def _lr():
    """The logistic regression every LR reference uses: L2, C = 1, converged tightly."""
    return LogisticRegression(C=1.0, solver="lbfgs", max_iter=10000, tol=1e-8)


def fit_logistic(X, y):
    model = make_pipeline(
        StandardScaler(),
        _lr(),
    )
    model.fit(X, y)
    return lambda Z: model.predict_proba(Z)[:, 1]


def fit_binned_lr(X, y):
    model = make_pipeline(
        KBinsDiscretizer(
            n_bins=10,
            encode="onehot",
            strategy="quantile",
            quantile_method="averaged_inverted_cdf",
        ),
        _lr(),
    )
    with warnings.catch_warnings():
        # Discrete columns (PAY_*, SEX, ...) give duplicate quantile edges; sklearn drops
        # them and warns. That is the intended behaviour.
        warnings.filterwarnings("ignore", message=".*Bins whose width are too small.*")
        model.fit(X, y)
    return lambda Z: model.predict_proba(Z)[:, 1]


class QuantileBins:
    """Per feature: equal-frequency edges from pandas.qcut(train, n_bins, duplicates='drop').

    The outer edges are replaced by -inf/+inf so every value (also out of the training range)
    falls in a bin; bins are right-closed, (a, b], as pandas.qcut builds them. Note that
    sklearn's KBinsDiscretizer uses left-closed bins [a, b) instead, which matters for the
    discrete columns (PAY_*, SEX, EDUCATION, ...): a value equal to an edge goes to the bin
    below here and to the bin above there.
    """

    def __init__(self, n_bins=10):
        self.n_bins = n_bins

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.edges_ = []
        for j in range(X.shape[1]):
            _, edges = pd.qcut(X[:, j], self.n_bins, retbins=True, duplicates="drop")
            edges = np.asarray(edges, dtype=np.float64).copy()
            edges[0] = -np.inf
            edges[-1] = np.inf
            self.edges_.append(edges)
        return self

    def n_bins_of(self, j):
        return len(self.edges_[j]) - 1

    def codes(self, X):
        """Bin index (0-based) of every cell, shape like X."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape, dtype=np.int64)
        for j in range(X.shape[1]):
            e = self.edges_[j]
            out[:, j] = np.clip(np.searchsorted(e, X[:, j], side="left") - 1, 0, len(e) - 2)
        return out

    def onehot(self, X):
        """Sparse (CSR) one-hot of the bin indices, features side by side."""
        c = self.codes(X)
        n, d = c.shape
        offsets = np.cumsum([0] + [self.n_bins_of(j) for j in range(d)])
        cols = (c + offsets[:-1][None, :]).ravel()
        rows = np.repeat(np.arange(n), d)
        data = np.ones(n * d, dtype=np.float64)
        return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(n, offsets[-1]))


class WoeEncoder:
    """QuantileBins, then every value replaced by the smoothed WOE of its bin."""

    def __init__(self, n_bins=10, smoothing=0.5):
        self.n_bins = n_bins
        self.smoothing = smoothing

    def fit(self, X, y):
        y = np.asarray(y)
        self.bins_ = QuantileBins(self.n_bins).fit(X)
        codes = self.bins_.codes(X)
        n1 = float(np.sum(y == 1))
        n0 = float(np.sum(y == 0))
        self.woe_ = []
        for j in range(codes.shape[1]):
            k = self.bins_.n_bins_of(j)
            c1 = np.bincount(codes[:, j], weights=(y == 1).astype(np.float64), minlength=k)
            c0 = np.bincount(codes[:, j], weights=(y == 0).astype(np.float64), minlength=k)
            self.woe_.append(np.log(((c0 + self.smoothing) / n0) / ((c1 + self.smoothing) / n1)))
        return self

    def transform(self, X):
        codes = self.bins_.codes(X)
        out = np.empty(codes.shape, dtype=np.float64)
        for j in range(codes.shape[1]):
            out[:, j] = self.woe_[j][codes[:, j]]
        return out


def fit_woe_lr(X, y):
    enc = WoeEncoder(10, 0.5).fit(X, y)
    lr = _lr().fit(enc.transform(X), y)
    return lambda Z: lr.predict_proba(enc.transform(Z))[:, 1]


def fit_qcut_onehot_lr(X, y):
    bins = QuantileBins(10).fit(X)
    lr = _lr().fit(bins.onehot(X), y)
    return lambda Z: lr.predict_proba(bins.onehot(Z))[:, 1]


def fit_lightgbm(X, y, params=LIGHTGBM_PARAMS):
    model = lightgbm.LGBMClassifier(**params)
    model.fit(X, y)
    return lambda Z: model.predict_proba(Z)[:, 1]


def fit_lightgbm_default(X, y):
    return fit_lightgbm(X, y, LIGHTGBM_DEFAULT_PARAMS)


def fit_xgboost(X, y):
    model = xgboost.XGBClassifier(**XGBOOST_PARAMS)
    model.fit(X, y)
    return lambda Z: model.predict_proba(Z)[:, 1]


MODELS = {
    "logistic": (fit_logistic, LOGISTIC_PARAMS),
    "binned_lr": (fit_binned_lr, BINNED_LR_PARAMS),
    "qcut_onehot_lr": (fit_qcut_onehot_lr, QCUT_ONEHOT_LR_PARAMS),
    "woe_lr": (fit_woe_lr, WOE_LR_PARAMS),
    "lightgbm": (fit_lightgbm, LIGHTGBM_PARAMS),
    "lightgbm_default": (fit_lightgbm_default, LIGHTGBM_DEFAULT_PARAMS),
    "xgboost": (fit_xgboost, XGBOOST_PARAMS),
}
HORIZONTAL_MODELS = [
    "logistic",
    "binned_lr",
    "qcut_onehot_lr",
    "woe_lr",
    "lightgbm",
    "lightgbm_default",
    "xgboost",
]


def run_model(name, X_train, y_train, X_test, y_test, setting):
    fit, params = MODELS[name]
    t0 = time.perf_counter()
    predict = fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    m = metrics(y_test, predict(X_test))
    row = {"model": name, "setting": setting}
    row.update(m)
    row["train_seconds"] = seconds
    row["n_train"] = int(len(y_train))
    row["n_test"] = int(len(y_test))
    row["n_features"] = int(X_train.shape[1])
    row["params"] = params
    print(
        f"  {setting:40s} {name:17s} auc={m['auc']:.4f} ks={m['ks']:.4f} "
        f"logloss={m['log_loss']:.4f} {seconds:7.3f}s",
        file=sys.stderr,
    )
    return row


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def read_csv(data_dir, stem):
    return pd.read_csv(os.path.join(data_dir, stem + ".csv"), dtype={"id": str})


def load_vertical(data_dir):
    """Guest inner-joined with host on id, in the guest file's row order.

    Returns (ids, y, X_all, guest_cols, host_cols) with X_all a DataFrame whose columns
    are the guest's x0..x12 named `guest_x0`.. followed by the host's x0..x9 named
    `host_x0`.. (the same order as x0..x22 of the homo files).
    """
    guest = read_csv(data_dir, GUEST)
    host = read_csv(data_dir, HOST)
    gx = [c for c in guest.columns if c not in ("id", "y")]
    hx = [c for c in host.columns if c != "id"]
    guest = guest.rename(columns={c: "guest_" + c for c in gx})
    host = host.rename(columns={c: "host_" + c for c in hx})
    joined = guest.merge(host, on="id", how="inner", validate="one_to_one", sort=False)
    if len(joined) != len(guest) or len(joined) != len(host):
        raise ValueError(f"join is not 1:1: guest {len(guest)}, host {len(host)}, joined {len(joined)}")
    guest_cols = ["guest_" + c for c in gx]
    host_cols = ["host_" + c for c in hx]
    ids = joined["id"].tolist()
    y = joined["y"].to_numpy().astype(np.int64)
    X = joined[guest_cols + host_cols]
    return ids, y, X, guest_cols, host_cols


def vertical_results(ids, y, X, guest_cols, host_cols, train_idx, test_idx):
    results = []
    settings = [
        ("centralized", guest_cols + host_cols),
        ("party:" + GUEST, guest_cols),
        ("party:" + HOST, host_cols),
    ]
    y_train, y_test = y[train_idx], y[test_idx]
    for setting, cols in settings:
        Xs = X[cols].to_numpy(dtype=np.float64)
        for name in MODELS:
            results.append(run_model(name, Xs[train_idx], y_train, Xs[test_idx], y_test, setting))
    return results


def split_summary(ids, y, train_idx, test_idx):
    test_ids = sorted(ids[i] for i in test_idx)
    return {
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
        "test_positives": int(y[test_idx].sum()),
        "train_positives": int(y[train_idx].sum()),
        # Cross-check of the exact test set: sum of the integer ids, and SHA-256 (hex) of
        # the test id strings sorted by byte order and joined with "\n" (no trailing "\n").
        "test_id_sum": int(sum(int(i) for i in test_ids)) if all(i.isdigit() for i in test_ids) else None,
        "test_ids_sha256": hashlib.sha256("\n".join(sorted(test_ids)).encode()).hexdigest(),
    }


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def time_fits(make_model, X, y, runs=TIMING_RUNS):
    """Wall and process-CPU seconds of `runs` fits (CPU time is less disturbed by other load)."""
    wall, cpu = [], []
    for _ in range(runs):
        model = make_model()
        c0 = time.process_time()
        t0 = time.perf_counter()
        model.fit(X, y)  # includes Dataset / DMatrix construction (binning)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def timing_section(X_vert_train, y_vert_train, X_homo_train, y_homo_train):
    def lgb():
        return lightgbm.LGBMClassifier(**LIGHTGBM_PARAMS)

    def xgb():
        return xgboost.XGBClassifier(**XGBOOST_PARAMS)

    load_before = os.getloadavg()
    out = {}
    for key, make in (("lightgbm", lgb), ("xgboost", xgb)):
        for prefix, (Xt, yt) in (
            ("", (X_vert_train, y_vert_train)),
            ("homo_", (X_homo_train, y_homo_train)),
        ):
            wall, cpu = time_fits(make, Xt, yt)
            out[f"{prefix}{key}_fit_seconds_median"] = statistics.median(wall)
            out[f"{prefix}{key}_fit_seconds_min"] = min(wall)
            out[f"{prefix}{key}_fit_cpu_seconds_median"] = statistics.median(cpu)
            out[f"{prefix}{key}_fit_seconds_runs"] = wall
            print(
                f"  timing {prefix or 'vertical_'}{key}: median {statistics.median(wall):.3f}s "
                f"min {min(wall):.3f}s cpu median {statistics.median(cpu):.3f}s",
                file=sys.stderr,
            )
    load_after = os.getloadavg()
    out.update(
        {
            "rows": int(X_vert_train.shape[0]),
            "features": int(X_vert_train.shape[1]),
            "homo_rows": int(X_homo_train.shape[0]),
            "homo_features": int(X_homo_train.shape[1]),
            "n_trees": LIGHTGBM_PARAMS["n_estimators"],
            "max_depth": LIGHTGBM_PARAMS["max_depth"],
            "max_bin": LIGHTGBM_PARAMS["max_bin"],
            "threads": 1,
            "runs": TIMING_RUNS,
            "what": "wall seconds of LGBMClassifier.fit / XGBClassifier.fit with the matched "
            "parameters (1 thread), including Dataset/DMatrix construction; vertical = "
            "fedcredit-split-v1 train rows of guest+host joined; homo = the three homo "
            "training files pooled",
            "loadavg_1min_before": load_before[0],
            "loadavg_1min_after": load_after[0],
        }
    )
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Generated application tables with high-cardinality text columns
# --------------------------------------------------------------------------------------

# fedcredit's reading of a CSV (fedcredit-datasets `load_table`): these cell texts are missing.
MISSING_TOKENS = ["", "NA", "NaN", "nan", "null"]
# fedcredit's `EncoderOptions::default().min_frequency`.
MIN_FREQUENCY = 50
# fedcredit's GBDT bins: at most 255 value bins per feature; a categorical feature with more
# levels keeps the 254 most frequent training levels (ties: level name order) and one "other".
MAX_BINS = 255
APP_TIMING_RUNS = 5

APP_LOGISTIC_PARAMS = {
    "preprocess": "fedcredit's encoder: numeric columns mean-imputed (training mean), a 0/1 "
    "indicator when the training column has missing cells, z-scored with the population std "
    "of the imputed training column; text columns one-hot over the levels seen at least "
    f"{MIN_FREQUENCY} times in training, one column for the rarer levels that also takes "
    "levels unseen in training (OneHotEncoder(min_frequency=50, "
    "handle_unknown='infrequent_if_exist'); checked against it), and a missing column when "
    "training has missing cells",
    "min_frequency": MIN_FREQUENCY,
    "C": 1.0,
    "penalty": "l2",
    "solver": "lbfgs",
    "max_iter": 10000,
    "tol": 1e-8,
    "fit_intercept": True,
}

LIGHTGBM_CATEGORICAL_DEFAULTS = {
    "min_data_per_group": 100,
    "cat_smooth": 10.0,
    "cat_l2": 10.0,
    "max_cat_threshold": 32,
    "max_cat_to_onehot": 4,
}


def read_applications(path):
    """The CSV as fedcredit reads it: ids as text, a column numeric when every non-missing
    cell parses as a number, text otherwise; returns (ids, y, X DataFrame, text columns)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=MISSING_TOKENS)
    ids = df["id"].tolist()
    y = df["default"].astype(float).astype(np.int64).to_numpy()
    feat = [c for c in df.columns if c not in ("id", "default")]
    text = []
    X = pd.DataFrame(index=df.index)
    for c in feat:
        num = pd.to_numeric(df[c], errors="coerce")
        if (num.isna() == df[c].isna()).all():
            X[c] = num.astype(np.float64)
        else:
            X[c] = df[c]
            text.append(c)
    return ids, y, X, text


class FedcreditEncoder:
    """fedcredit's LinearEncoder with its default options, producing a CSR design."""

    def fit(self, X, text):
        self.num = [c for c in X.columns if c not in text]
        self.text = text
        Xn = X[self.num].to_numpy(np.float64)
        count = (~np.isnan(Xn)).sum(axis=0)
        self.mean = np.where(count > 0, np.nansum(Xn, axis=0) / np.maximum(count, 1), 0.0)
        filled = np.where(np.isnan(Xn), self.mean, Xn)
        std = filled.std(axis=0)  # population std of the imputed column
        tiny = 10.0 * np.finfo(float).eps * np.maximum(np.abs(self.mean), 1.0)
        self.scale = np.where(std > tiny, std, 1.0)
        self.indicator = np.isnan(Xn).any(axis=0)
        self.levels = {}
        for c in text:
            counts = X[c].value_counts(dropna=True)
            kept = sorted(counts[counts >= MIN_FREQUENCY].index)
            rare = sorted(counts[(counts > 0) & (counts < MIN_FREQUENCY)].index)
            self.levels[c] = (
                {level: k for k, level in enumerate(kept)},
                len(rare) > 0,
                bool(X[c].isna().any()),
                rare,
            )
            # Cross-check with scikit-learn's infrequent-category pooling.
            nonmissing = X[c].dropna().to_numpy().reshape(-1, 1)
            ohe = OneHotEncoder(
                min_frequency=MIN_FREQUENCY, handle_unknown="infrequent_if_exist"
            ).fit(nonmissing)
            inf = ohe.infrequent_categories_[0]
            sk_rare = sorted([] if inf is None else list(inf))
            if sk_rare != rare:
                raise AssertionError(f"{c}: infrequent levels differ from OneHotEncoder's")
        return self

    def transform(self, X):
        n = len(X)
        Xn = X[self.num].to_numpy(np.float64)
        miss = np.isnan(Xn)
        dense = (np.where(miss, self.mean, Xn) - self.mean) / self.scale
        blocks = [scipy.sparse.csr_matrix(dense)]
        if self.indicator.any():
            blocks.append(scipy.sparse.csr_matrix(miss[:, self.indicator].astype(np.float64)))
        for c in self.text:
            index, other, missing, _ = self.levels[c]
            width = len(index) + int(other) + int(missing)
            s = X[c].astype(object)
            kept = s.map(index).to_numpy(dtype=np.float64)  # NaN: missing, rare or unseen
            missing_pos = len(index) + int(other) if missing else -1
            other_pos = len(index) if other else -1
            col = np.where(
                ~np.isnan(kept),
                np.nan_to_num(kept, nan=-1.0),
                np.where(s.isna().to_numpy(), missing_pos, other_pos),
            ).astype(np.int64)
            rows = np.nonzero(col >= 0)[0]
            blocks.append(
                scipy.sparse.csr_matrix(
                    (np.ones(len(rows)), (rows, col[rows])), shape=(n, width)
                )
            )
        return scipy.sparse.hstack(blocks, format="csr")


def fit_app_logistic(X, y, text):
    enc = FedcreditEncoder().fit(X, text)
    lr = _lr().fit(enc.transform(X), y)
    return lambda Z: lr.predict_proba(enc.transform(Z))[:, 1]


def as_categoricals(X_train, X_other, text, binned):
    """Text columns as pandas categoricals with the training levels (unseen levels -> NaN).
    With `binned`, a column with more than MAX_BINS levels in the whole table keeps its
    MAX_BINS - 1 most frequent training levels and pools the rest into "__other__"."""
    A, B = X_train.copy(), X_other.copy()
    for c in text:
        all_levels = sorted(set(X_train[c].dropna()) | set(X_other[c].dropna()))
        if binned and len(all_levels) > MAX_BINS:
            counts = X_train[c].value_counts(dropna=True)
            order = sorted(all_levels, key=lambda level: (-int(counts.get(level, 0)), level))
            keep = set(order[: MAX_BINS - 1])

            def pool(s):
                s = s.astype(object)
                return s.where(s.isna() | s.isin(keep), "__other__")

            A[c], B[c] = pool(A[c]), pool(B[c])
            cats = sorted(keep) + ["__other__"]
        else:
            cats = sorted(set(X_train[c].dropna()))
        # Levels outside `cats` (unseen in training) become missing, as in LightGBM.
        A[c] = pd.Categorical(A[c].where(A[c].isin(cats)), categories=cats)
        B[c] = pd.Categorical(B[c].where(B[c].isin(cats)), categories=cats)
    return A, B


def fit_app_lightgbm(X_train, y, X_test, text, binned):
    A, B = as_categoricals(X_train, X_test, text, binned)
    model = lightgbm.LGBMClassifier(**LIGHTGBM_PARAMS).fit(A, y)
    return model.predict_proba(B)[:, 1]


def applications_main(args):
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "applications.csv")
        cmd = [
            args.fedcredit, "data", "applications", "--out", csv,
            "--rows", str(args.rows), "--numeric", str(args.numeric),
            "--text", str(args.text), "--seed", str(args.seed),
        ]
        print(" ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ids, y, X, text = read_applications(csv)
    print(f"{args.applications}: {len(ids)} rows, {X.shape[1]} features ({len(text)} text), "
          f"{int(y.sum())} defaults", file=sys.stderr)
    train_idx, test_idx = fedcredit_split(ids, y, TEST_FRACTION, SEED)
    split = {"kind": SPLIT_KIND, "test_fraction": TEST_FRACTION, "seed": SEED}
    split.update(split_summary(ids, y, train_idx, test_idx))
    del split["test_id_sum"]  # the ids are not integers
    Xtr, Xte = X.iloc[train_idx].reset_index(drop=True), X.iloc[test_idx].reset_index(drop=True)
    ytr, yte = y[train_idx], y[test_idx]

    results = []

    def record(name, params, proba, seconds):
        m = metrics(yte, proba)
        row = {"model": name, "setting": "centralized", **m, "train_seconds": seconds,
               "n_train": int(len(ytr)), "n_test": int(len(yte)),
               "n_features": int(X.shape[1]), "params": params}
        results.append(row)
        print(f"  {name:17s} auc={m['auc']:.4f} ks={m['ks']:.4f} logloss={m['log_loss']:.4f} "
              f"{seconds:7.3f}s", file=sys.stderr)

    t0 = time.perf_counter()
    predict = fit_app_logistic(Xtr, ytr, text)
    seconds = time.perf_counter() - t0
    record("logistic", APP_LOGISTIC_PARAMS, predict(Xte), seconds)
    lgb_params = {**LIGHTGBM_PARAMS, **LIGHTGBM_CATEGORICAL_DEFAULTS,
                  "categorical": "text columns as pandas categoricals (training levels)"}
    for name, binned in (("lightgbm", False), ("lightgbm_binned", True)):
        params = dict(lgb_params)
        if binned:
            params["categorical"] += (f"; a column with more than {MAX_BINS} levels keeps its "
                                      f"{MAX_BINS - 1} most frequent training levels, the rest "
                                      "pooled into one level (fedcredit's categorical bins)")
        t0 = time.perf_counter()
        proba = fit_app_lightgbm(Xtr, ytr, Xte, text, binned)
        record(name, params, proba, time.perf_counter() - t0)

    # Timing on the whole table, one thread.
    load_before = os.getloadavg()
    timing = {}
    A, _ = as_categoricals(X, X.iloc[:0], text, False)
    Ab, _ = as_categoricals(X, X.iloc[:0], text, True)
    for key, data in (("lightgbm", A), ("lightgbm_binned", Ab)):
        wall, cpu = time_fits(lambda: lightgbm.LGBMClassifier(**LIGHTGBM_PARAMS), data, y,
                              APP_TIMING_RUNS)
        timing[f"{key}_fit_seconds_median"] = statistics.median(wall)
        timing[f"{key}_fit_seconds_min"] = min(wall)
        timing[f"{key}_fit_cpu_seconds_median"] = statistics.median(cpu)
        print(f"  timing {key}: median {statistics.median(wall):.3f}s min {min(wall):.3f}s",
              file=sys.stderr)
    wall = []
    for _ in range(3):
        t0 = time.perf_counter()
        fit_app_logistic(X, y, text)
        wall.append(time.perf_counter() - t0)
    timing["sklearn_logistic_fit_seconds_median"] = statistics.median(wall)
    print(f"  timing sklearn logistic (encode + fit): median {statistics.median(wall):.3f}s",
          file=sys.stderr)
    timing.update({
        "rows": int(len(y)), "features": int(X.shape[1]),
        "n_trees": LIGHTGBM_PARAMS["n_estimators"], "max_depth": LIGHTGBM_PARAMS["max_depth"],
        "max_bin": LIGHTGBM_PARAMS["max_bin"], "threads": 1, "runs": APP_TIMING_RUNS,
        "what": "wall seconds on the whole table (all rows), one thread: LGBMClassifier.fit "
        "including Dataset construction; scikit-learn's encoding + LogisticRegression.fit "
        "(lbfgs, tol 1e-8; scikit-learn's lbfgs may use more than one thread through its BLAS)",
        "loadavg_1min_before": load_before[0], "loadavg_1min_after": os.getloadavg()[0],
    })
    out = {
        "dataset": args.applications,
        "generated_by": "benches/reference/make_reference.py --applications",
        "generator": {"command": "fedcredit data applications", "rows": args.rows,
                      "numeric": args.numeric, "text": args.text, "seed": args.seed},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {
            "python": platform.python_version(), "sklearn": sklearn.__version__,
            "lightgbm": lightgbm.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scipy": scipy.__version__,
        },
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "columns": {"text": text, "numeric": [c for c in X.columns if c not in text],
                    "id": "id", "label": "default"},
        "split": split,
        "results": results,
        "timing": timing,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", help="folder holding the default_credit CSV files")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--applications", metavar="NAME",
                    help="make the references of a generated application table named NAME")
    ap.add_argument("--fedcredit", default="target/release/fedcredit",
                    help="the fedcredit binary that generates the table")
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--numeric", type=int, default=39)
    ap.add_argument("--text", type=int, default=13)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.applications:
        applications_main(args)
        return
    if not args.data_dir:
        ap.error("--data-dir is required (or --applications)")

    tv_train, tv_test = fedcredit_split(
        TEST_VECTOR["ids"], TEST_VECTOR["labels"], TEST_VECTOR["test_fraction"], TEST_VECTOR["seed"]
    )
    print(f"split test vector: train {tv_train.tolist()} test {tv_test.tolist()}", file=sys.stderr)

    ids, y, X, guest_cols, host_cols = load_vertical(args.data_dir)
    print(f"vertical: {len(ids)} rows, guest {len(guest_cols)} + host {len(host_cols)} features, "
          f"{int(y.sum())} positives", file=sys.stderr)

    train_idx, test_idx = fedcredit_split(ids, y, TEST_FRACTION, SEED)
    split = {"kind": SPLIT_KIND, "test_fraction": TEST_FRACTION, "seed": SEED}
    split.update(split_summary(ids, y, train_idx, test_idx))
    split["test_vector"] = {
        **TEST_VECTOR,
        "train_indices": tv_train.tolist(),
        "test_indices": tv_test.tolist(),
        "keys_hex": [f"{split_key(i, TEST_VECTOR['seed']):016x}" for i in TEST_VECTOR["ids"]],
    }
    print(f"fedcredit split: {split['n_train']} train / {split['n_test']} test, "
          f"{split['test_positives']} test positives", file=sys.stderr)

    print("vertical, fedcredit-split-v1:", file=sys.stderr)
    results = vertical_results(ids, y, X, guest_cols, host_cols, train_idx, test_idx)

    sk_train, sk_test = train_test_split(
        np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=SEED
    )
    sk_train, sk_test = np.sort(sk_train), np.sort(sk_test)
    sk_split = {
        "kind": "sklearn.model_selection.train_test_split",
        "test_size": TEST_FRACTION,
        "stratify": "y",
        "random_state": SEED,
        "row_order": "guest file order",
    }
    sk_split.update(split_summary(ids, y, sk_train, sk_test))
    print("vertical, sklearn train_test_split:", file=sys.stderr)
    sk_results = vertical_results(ids, y, X, guest_cols, host_cols, sk_train, sk_test)

    # Horizontal.
    homo = {stem: read_csv(args.data_dir, stem) for stem in HOMO_TRAIN + [HOMO_TEST]}
    feat = [c for c in homo[HOMO_TEST].columns if c not in ("id", "y")]
    for stem, df in homo.items():
        if [c for c in df.columns if c not in ("id", "y")] != feat:
            raise ValueError(f"{stem}: columns differ from {HOMO_TEST}")
    pooled = pd.concat([homo[s] for s in HOMO_TRAIN], ignore_index=True)
    X_homo = pooled[feat].to_numpy(dtype=np.float64)
    y_homo = pooled["y"].to_numpy().astype(np.int64)
    X_ht = homo[HOMO_TEST][feat].to_numpy(dtype=np.float64)
    y_ht = homo[HOMO_TEST]["y"].to_numpy().astype(np.int64)
    print("horizontal:", file=sys.stderr)
    h_results = []
    for name in HORIZONTAL_MODELS:
        h_results.append(run_model(name, X_homo, y_homo, X_ht, y_ht, "centralized"))
    for stem in HOMO_TRAIN:
        Xs = homo[stem][feat].to_numpy(dtype=np.float64)
        ys = homo[stem]["y"].to_numpy().astype(np.int64)
        for name in HORIZONTAL_MODELS:
            h_results.append(run_model(name, Xs, ys, X_ht, y_ht, "party:" + stem))

    print("timing:", file=sys.stderr)
    Xv = X.to_numpy(dtype=np.float64)
    timing = timing_section(Xv[train_idx], y[train_idx], X_homo, y_homo)

    out = {
        "dataset": "default_credit",
        "generated_by": "benches/reference/make_reference.py",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "lightgbm": lightgbm.__version__,
            "xgboost": xgboost.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scipy": scipy.__version__,
        },
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "columns": {
            "centralized": "guest x0..x12 then host x0..x9 (= x0..x22 of the homo files)",
            "party:" + GUEST: "guest x0..x12",
            "party:" + HOST: "host x0..x9",
            "row_order": "guest file order (inner join on id, 1:1)",
        },
        "split": split,
        "results": results,
        "sklearn_split": sk_split,
        "sklearn_split_results": sk_results,
        "timing": timing,
        "horizontal": {
            "train": [s + ".csv" for s in HOMO_TRAIN],
            "test": HOMO_TEST + ".csv",
            "n_train": int(len(y_homo)),
            "n_test": int(len(y_ht)),
            "features": feat,
            "results": h_results,
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
