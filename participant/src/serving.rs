//! The daemon's side of the scoring service: it keeps its parts of serving vertical models
//! (`state_dir/models/<job>.json` with the `<job>.serving.json` manifest) over its latest
//! snapshot, answers the coordinator's score queries from them, notices new snapshots and
//! answers contagion queries from its supply-chain links.
//!
//! A snapshot is the table file as it is now; a changed file (modification time or size) is a
//! new snapshot. Its label is the file's modification time in UTC (RFC 3339). Every part is
//! recomputed for the whole table at once, so a query is a lookup; the coordinator is told
//! which enterprises' parts moved (`SnapshotNotice`), which is exactly what its next scores
//! would show it anyway. What is answered: partial log-odds and reason codes naming this
//! party's features (`fedcredit_federation::serving`); never a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fedcredit_datasets::table::{TableSpec, load_table};
use fedcredit_federation::serving::{MAX_TIERS, ServedPart, ServingManifest, SupplyLinks};
use fedcredit_federation::vertical::model::PartyModel;
use fedcredit_proto::pb;
use tracing::{info, warn};

use crate::config::DataConfig;

/// The manifest's file beside a part.
pub fn manifest_path(part: &Path) -> PathBuf {
    part.with_extension("serving.json")
}

/// What identifies a snapshot of a file: modification time and size.
type Stamp = (SystemTime, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a time (proleptic Gregorian, UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[derive(Default)]
struct State {
    stamp: Option<Stamp>,
    parts: BTreeMap<String, Arc<ServedPart>>,
    links: Option<(Stamp, Arc<SupplyLinks>)>,
}

/// The party's serving state.
pub struct Server {
    party: String,
    identity: fedcredit_federation::protocol::Identity,
    data: DataConfig,
    models_dir: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("party", &self.party).finish_non_exhaustive()
    }
}

impl Server {
    /// Serving state for the table `data`, with parts under `models_dir`.
    pub fn new(
        party: String,
        identity: fedcredit_federation::protocol::Identity,
        data: DataConfig,
        models_dir: PathBuf,
    ) -> Self {
        Self { party, identity, data, models_dir, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The part of model job `job` over the table as it is at `stamp`.
    fn load_part(&self, part_path: &Path, stamp: Stamp) -> Result<ServedPart, String> {
        let manifest: ServingManifest = read_json(&manifest_path(part_path))?;
        let part: PartyModel = read_json(part_path)?;
        let mut spec = TableSpec::new(&self.data.path, &manifest.id_column)
            .with_features(manifest.schema.iter().map(|s| s.name.clone()));
        if let Some(c) = &self.data.categorical_columns {
            spec = spec.with_categorical(c.iter().cloned());
        }
        let name = self.data.path.file_name().map(|n| n.to_string_lossy().to_string());
        let table = load_table(&spec).map_err(|e| {
            // The file's location stays in the local log.
            warn!(file = %self.data.path.display(), error = %e, "cannot read the table to score");
            format!(
                "{}: its table ({}) cannot be scored: {e}",
                self.party,
                name.unwrap_or_default()
            )
            .replace(&self.data.path.display().to_string(), "its table")
        })?;
        ServedPart::new(manifest, part, rfc3339(stamp.0), table.ids, &table.features)
            .map_err(|e| format!("{}: {e}", self.party))
    }

    /// The parts kept in the models folder (files with a manifest).
    fn part_files(&self) -> Vec<(String, PathBuf)> {
        let Ok(dir) = std::fs::read_dir(&self.models_dir) else { return Vec::new() };
        let mut out: Vec<(String, PathBuf)> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.to_string_lossy().ends_with(".serving.json")
                    && manifest_path(p).exists()
            })
            .filter_map(|p| {
                let m: ServingManifest = read_json(&manifest_path(&p)).ok()?;
                Some((m.job, p))
            })
            .collect();
        out.sort();
        out
    }

    /// Loads every part over the table as it is now. Returns, when the table changed since
    /// the last load (not on the first), the new snapshot's label and the enterprises whose
    /// part of some model moved.
    pub fn refresh(&self) -> Option<pb::SnapshotNotice> {
        let now = stamp(&self.data.path)?;
        let files = self.part_files();
        let (first, changed_file, missing) = {
            let st = self.state();
            let missing: Vec<_> =
                files.iter().filter(|(j, _)| !st.parts.contains_key(j)).cloned().collect();
            (st.stamp.is_none(), st.stamp != Some(now), missing)
        };
        if !changed_file && missing.is_empty() {
            return None;
        }
        let todo = if changed_file { files } else { missing };
        let mut moved = std::collections::BTreeSet::new();
        for (job, path) in todo {
            match self.load_part(&path, now) {
                Ok(p) => {
                    let mut st = self.state();
                    if let Some(old) = st.parts.get(&job)
                        && changed_file
                    {
                        moved.extend(p.changed_since(old));
                    }
                    info!(model_job = %job, enterprises = p.ids().len(), snapshot = %p.snapshot, "serving part loaded");
                    st.parts.insert(job, Arc::new(p));
                }
                Err(e) => warn!(model_job = %job, error = %e, "cannot serve this part"),
            }
        }
        let mut st = self.state();
        st.stamp = Some(now);
        (changed_file && !first).then(|| pb::SnapshotNotice {
            snapshot: rfc3339(now.0),
            changed_ids: moved.into_iter().collect(),
        })
    }

    /// The answer to a score query.
    pub fn answer(&self, q: &pb::ScoreQuery) -> pb::ScoreReply {
        let part = self.state().parts.get(&q.model_job).cloned();
        let part = match part {
            Some(p) => Some(p),
            None => {
                self.refresh();
                self.state().parts.get(&q.model_job).cloned()
            }
        };
        match part {
            Some(p) => p.answer(q, &self.identity),
            None => pb::ScoreReply {
                query_id: q.query_id,
                error: format!(
                    "{} holds no serving part of the model trained by job {}",
                    self.party, q.model_job
                ),
                ..Default::default()
            },
        }
    }

    /// The answer to a contagion query: the union of the suppliers, up to the asked tiers, of
    /// the enterprises that fell.
    pub fn contagion(&self, q: &pb::ContagionQuery) -> pb::ContagionReply {
        let mut reply = pb::ContagionReply { query_id: q.query_id, ..Default::default() };
        match self.links() {
            Ok(links) => {
                for (s, t) in links.upstream(&q.enterprises, q.tiers.min(MAX_TIERS)) {
                    reply.suppliers.push(s);
                    reply.tiers.push(t);
                }
            }
            Err(e) => reply.error = e,
        }
        reply
    }

    fn links(&self) -> Result<Arc<SupplyLinks>, String> {
        let Some(path) = &self.data.links else {
            return Err(format!("{} knows no supply-chain links (no data.links)", self.party));
        };
        let now =
            stamp(path).ok_or_else(|| format!("{}: its links file cannot be read", self.party))?;
        if let Some((s, l)) = &self.state().links
            && *s == now
        {
            return Ok(l.clone());
        }
        let links = Arc::new(read_links(path).map_err(|e| {
            warn!(file = %path.display(), error = %e, "cannot read the links");
            format!("{}: its links file cannot be read: {e}", self.party)
        })?);
        self.state().links = Some((now, links.clone()));
        Ok(links)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `(supplier, customer)` pairs from a CSV with columns `supplier_id` and `customer_id`.
fn read_links(path: &Path) -> Result<SupplyLinks, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').map(str::trim).collect();
    let col = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| format!("no column `{name}`"))
    };
    let (s, c) = (col("supplier_id")?, col("customer_id")?);
    let mut pairs = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        match (cells.get(s), cells.get(c)) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
                pairs.push(((*a).to_owned(), (*b).to_owned()));
            }
            _ if line.trim().is_empty() => {}
            _ => return Err(format!("data row {} lacks a supplier or customer", i + 1)),
        }
    }
    Ok(SupplyLinks::new(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_times() {
        let t = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_709_210_096)), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn links_name_their_bad_row() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("links.csv");
        std::fs::write(&p, "supplier_id,customer_id\na,b\nc,\n").unwrap();
        assert!(read_links(&p).unwrap_err().contains("data row 2"));
        std::fs::write(&p, "supplier,customer\na,b\n").unwrap();
        assert!(read_links(&p).unwrap_err().contains("supplier_id"));
    }
}
