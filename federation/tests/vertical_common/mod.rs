//! Shared fixtures of the vertical tests: a joined table split by columns over the bank, the
//! tax bureau and the platform (each party's rows in its own order), and the whole vertical
//! runtime in memory over it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation};
use fedcredit_federation::protocol::{Identity, Outcome, PartySession, split_checkpoint};
use fedcredit_federation::vertical::conductor::VerticalConductor;
use fedcredit_federation::vertical::model::PartyModel;
use fedcredit_federation::vertical::role::VerticalRole;
use fedcredit_federation::vertical::{Alignment, PartyTable};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::Dataset;
use fedcredit_models::testdata::{ApplicationsConfig, applications};
use fedcredit_transport::identity::party_identity;
use fedcredit_transport::tls::init_certs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub const NAMES: [&str; 3] = ["bank", "tax", "platform"];

pub fn job() -> JobId {
    JobId("vlr-job".into())
}

pub fn pid(s: &str) -> PartyId {
    PartyId(s.into())
}

pub fn spec(n_parties: usize, model: &str) -> JobSpec {
    let names: Vec<String> = NAMES[..n_parties].iter().map(|p| format!("\"{p}\"")).collect();
    JobSpec::from_toml(&format!(
        "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n{model}\n[vertical]\n\
         label_holder = \"bank\"\n[vertical.lr]\nepochs = 12\nbatch_size = 256\n",
        names.join(", ")
    ))
    .unwrap()
}

/// A joined table split by columns over `n` parties, each party's rows in its own order.
pub struct Ecosystem {
    pub all: Dataset,
    pub parties: Vec<(PartyId, PartyTable, Alignment)>,
    /// Columns of `all` each party holds.
    pub columns: Vec<Vec<usize>>,
    /// Validation rows (agreed order = rows of `all`), as the roles pick them from the keys.
    pub valid: Vec<usize>,
    pub train: Vec<usize>,
}

pub fn ecosystem(rows: usize, n: usize, seed: u64, validation_fraction: f64) -> Ecosystem {
    wide_ecosystem(rows, n, seed, validation_fraction, 9)
}

pub fn wide_ecosystem(
    rows: usize,
    n: usize,
    seed: u64,
    validation_fraction: f64,
    numeric: usize,
) -> Ecosystem {
    let t = applications(&ApplicationsConfig { rows, numeric, text: 2, seed }).unwrap();
    ecosystem_of(t.data, n, seed, validation_fraction)
}

/// `data` split by columns over the first `n` of [`NAMES`] (column `j` to party `j % n`), the
/// label at the bank, each party's rows in its own order.
pub fn ecosystem_of(data: Dataset, n: usize, seed: u64, validation_fraction: f64) -> Ecosystem {
    let rows = data.n_rows();
    let d = data.features.n_features();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys: Vec<[u8; 16]> = (0..rows)
        .map(|_| {
            let mut k = [0u8; 16];
            rng.fill_bytes(&mut k);
            k
        })
        .collect();
    let agreed = Alignment { rows: (0..rows as u32).collect(), keys: keys.clone() };
    let (valid, train): (Vec<usize>, Vec<usize>) =
        (0..rows).partition(|&i| agreed.is_validation(i, validation_fraction));
    let mut parties = Vec::new();
    let mut columns = Vec::new();
    for (k, name) in NAMES[..n].iter().enumerate() {
        let cols: Vec<usize> = (0..d).filter(|j| j % n == k).collect();
        // Party k holds the rows rotated by k·7 (its own order).
        let order: Vec<usize> = (0..rows).map(|i| (i + k * 7) % rows).collect();
        let mut at = vec![0u32; rows];
        for (own, &agreed) in order.iter().enumerate() {
            at[agreed] = own as u32;
        }
        let table = PartyTable {
            ids: order.iter().map(|i| format!("E{i:06}")).collect(),
            features: data.features.select_rows(&order).select_columns(&cols),
            label: (k == 0).then(|| order.iter().map(|&i| data.label[i]).collect()),
        };
        parties.push((pid(name), table, Alignment { rows: at, keys: keys.clone() }));
        columns.push(cols);
    }
    Ecosystem { all: data, parties, columns, valid, train }
}

pub struct Run {
    pub outcome: Outcome,
    pub parts: BTreeMap<PartyId, PartyModel>,
    pub transcript: Vec<Entry>,
}

pub fn federated(
    spec: &JobSpec,
    eco: &Ecosystem,
    hook: &mut fedcredit_federation::protocol::in_memory::Intercept<'_>,
) -> Result<Run, String> {
    let fixture = Fixture::new(eco);
    let mut fed = fixture.federation(spec, eco);
    fed.start(hook)?;
    let outcome = fed.run(hook)?;
    let parts = fixture.kept_parts(spec, eco, &fed);
    Ok(Run { outcome, parts, transcript: std::mem::take(&mut fed.transcript) })
}

/// Certificates of the parties of an ecosystem (in a temporary directory).
pub struct Fixture {
    _dir: tempfile::TempDir,
    certs: fedcredit_transport::tls::CertPaths,
}

impl Fixture {
    pub fn new(eco: &Ecosystem) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = eco.parties.iter().map(|p| p.0.0.clone()).collect();
        let certs = init_certs(dir.path(), &names, &[]).unwrap();
        Self { _dir: dir, certs }
    }

    /// Party `k`'s session, restored from `checkpoint` when given.
    pub fn session(
        &self,
        spec: &JobSpec,
        eco: &Ecosystem,
        k: usize,
        checkpoint: Option<&[u8]>,
        seed: u64,
    ) -> PartySession {
        let (name, table, alignment) = &eco.parties[k];
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (secret, role) = match checkpoint {
            Some(bytes) => {
                let (secret, role_bytes) = split_checkpoint(bytes).unwrap();
                let role =
                    VerticalRole::new(&job(), spec, name, table.clone(), Some(&role_bytes), None)
                        .unwrap();
                (secret, role)
            }
            None => (
                ChannelSecret::generate(&mut rng),
                VerticalRole::with_alignment(&job(), spec, name, table.clone(), alignment.clone())
                    .unwrap(),
            ),
        };
        let identity: Identity = party_identity(&self.certs.parties[&name.0]).unwrap();
        PartySession::new(job(), spec, name.clone(), Box::new(role), secret, identity, rng)
    }

    /// The vertical conductor after an alignment of every row, and every party's session.
    pub fn federation(&self, spec: &JobSpec, eco: &Ecosystem) -> Federation {
        let schemas =
            eco.parties.iter().map(|p| (p.0.clone(), p.1.features.specs.clone())).collect();
        let rows = eco.all.n_rows() as u64;
        let conductor =
            VerticalConductor::after_alignment(&job(), spec, &schemas, rows).unwrap().with_seed(5);
        let sessions = (0..eco.parties.len())
            .map(|k| (eco.parties[k].0.clone(), self.session(spec, eco, k, None, 100 + k as u64)))
            .collect();
        Federation::new(job(), Box::new(conductor), sessions)
    }

    /// What each party kept, read back through a role restored from its last checkpoint.
    pub fn kept_parts(
        &self,
        spec: &JobSpec,
        eco: &Ecosystem,
        fed: &Federation,
    ) -> BTreeMap<PartyId, PartyModel> {
        let mut parts = BTreeMap::new();
        for (name, table, _) in &eco.parties {
            let (_, role_bytes) = split_checkpoint(&fed.checkpoints[name]).unwrap();
            let role =
                VerticalRole::new(&job(), spec, name, table.clone(), Some(&role_bytes), None)
                    .unwrap();
            if let Some(m) = PartyModel::from_kept(role.kept()).unwrap() {
                parts.insert(name.clone(), m);
            }
        }
        parts
    }
}

impl Ecosystem {
    /// Each party's columns over agreed rows `rows`.
    pub fn party_features(&self, k: usize, rows: &[usize]) -> fedcredit_models::Features {
        let (_, table, a) = &self.parties[k];
        let own: Vec<usize> = rows.iter().map(|&t| a.rows[t] as usize).collect();
        table.features.select_rows(&own)
    }

    /// Joint log-odds of agreed rows `rows` from the kept parts.
    pub fn joint(&self, parts: &BTreeMap<PartyId, PartyModel>, rows: &[usize]) -> Vec<f64> {
        let mut z = vec![0.0; rows.len()];
        for (k, (name, _, _)) in self.parties.iter().enumerate() {
            let s = parts[name].partial_log_odds(&self.party_features(k, rows)).unwrap();
            for (a, b) in z.iter_mut().zip(s) {
                *a += b;
            }
        }
        z
    }

    pub fn valid_labels(&self) -> Vec<f64> {
        self.valid.iter().map(|&i| self.all.label[i]).collect()
    }
}
