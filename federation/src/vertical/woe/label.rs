//! The label holder's side of federated WOE/IV (see [`super`]): encrypts its 0/1 label of
//! every aligned row under a fresh exponential-ElGamal key (ElGamal 1985, exponential
//! variant), streams the ciphertexts to the feature holders, bins its own columns in
//! plaintext, and turns each feature holder's encrypted per-bin sums into WOE and IV with the
//! centralized kernels.
//!
//! What it checks of a feature holder's sums: the sender is a feature holder of the job and
//! sends each of its features once; every feature's row counts add up to the aligned rows and
//! every decrypted event count lies in `0..=rows of its bin` (anything else is refused, never
//! wrapped); at most [`super::MAX_BINS`] bins per feature.

use std::collections::BTreeMap;
use std::sync::Arc;

use fedcredit_crypto::elgamal::{self, DlogTable, SecretKey};
use fedcredit_models::binning::{
    BinningMethod, FeatureBinning, WOE_SMOOTHING, monotone_merge, woe_iv,
};
use fedcredit_proto::pb;
use ndarray::ArrayView1;
use rayon::prelude::*;

use super::{
    FEATURES_PER_MESSAGE, FeatureIv, FeatureWoe, IvReport, KEPT_KEY, MAX_BINS, PartyIv, PartyWoe,
    ROWS_PER_MESSAGE, SCHEME, WoeParams, aligned_column,
};
use crate::ids::PartyId;
use crate::protocol::{CsRng, RoleError};
use crate::vertical::{PartyCtx, StageRoleOut};

/// One feature of a holder's sums, as received.
#[derive(Debug)]
struct Sums {
    name: String,
    categorical: bool,
    counts: Vec<u64>,
    cts: Vec<elgamal::Ciphertext>,
}

/// What the label holder knows of one feature holder.
#[derive(Debug, Default)]
struct Holder {
    total: Option<u32>,
    sums: BTreeMap<u32, Sums>,
    table: Option<PartyIv>,
}

/// The label holder's state in the stage.
pub struct LabelSide {
    params: WoeParams,
    key: SecretKey,
    rows: u64,
    own: PartyIv,
    holders: BTreeMap<PartyId, Holder>,
    done: bool,
}

impl std::fmt::Debug for LabelSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelSide")
            .field("rows", &self.rows)
            .field("holders", &self.holders.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl LabelSide {
    /// Opens the stage at the label holder: key, encrypted labels to every feature holder,
    /// its own columns binned.
    ///
    /// # Errors
    /// [`RoleError`] when the label is not 0/1 on the aligned rows or holds a single class,
    /// or a column cannot be binned.
    pub fn start(
        ctx: &mut PartyCtx<'_>,
        params: WoeParams,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<Self, RoleError> {
        let rows =
            ctx.alignment.as_ref().map(|a| super::super::fit_rows(ctx.spec, a)).unwrap_or_default();
        let label = ctx.table.label.as_ref().ok_or_else(|| RoleError("no label".into()))?;
        let n_table = ctx.table.n_rows();
        if rows.iter().any(|&r| r as usize >= n_table) {
            return Err(RoleError("the alignment names a row beyond the table".into()));
        }
        let mut y = Vec::with_capacity(rows.len());
        for &r in &rows {
            match label.get(r as usize).copied() {
                Some(v) if v == 0.0 || v == 1.0 => y.push(v),
                _ => return Err(RoleError("the label is not 0/1 on every aligned row".into())),
            }
        }
        let events = y.iter().filter(|&&v| v == 1.0).count();
        if events == 0 || events == y.len() {
            return Err(RoleError("the aligned rows hold a single class".into()));
        }
        let holders: Vec<PartyId> =
            ctx.spec.parties.iter().filter(|p| *p != ctx.me).cloned().collect();
        let key = SecretKey::generate(rng);
        if !holders.is_empty() {
            let ms: Vec<u64> = y.iter().map(|&v| u64::from(v == 1.0)).collect();
            let bytes = Arc::new(key.encrypt_to_bytes(&ms, rng));
            let n = rows.len() as u64;
            let first = pb::WoePayload {
                body: Some(pb::woe_payload::Body::Key(pb::WoeKey {
                    scheme: SCHEME.into(),
                    public_key: key.public_key().to_bytes().to_vec(),
                    rows: n,
                })),
            };
            let chunk = ROWS_PER_MESSAGE * elgamal::CIPHERTEXT_BYTES;
            let chunks = bytes.len().div_ceil(chunk);
            let src = std::iter::once(first).chain((0..chunks).map(move |k| {
                let lo = k * chunk;
                let hi = (lo + chunk).min(bytes.len());
                pb::WoePayload {
                    body: Some(pb::woe_payload::Body::Rows(pb::WoeRows {
                        offset: (k * ROWS_PER_MESSAGE) as u64,
                        total: n,
                        ciphertexts: bytes[lo..hi].to_vec(),
                    })),
                }
            }));
            out.stream(&holders, src.map(pb::vertical_payload::Body::Woe));
        }
        // Its own columns, in plaintext, with the centralized binner.
        let labels = ndarray::Array1::from(y);
        let specs = ctx.table.features.specs.clone();
        let columns: Vec<Vec<f64>> =
            (0..specs.len()).map(|j| aligned_column(ctx, &rows, j)).collect();
        let fitted: Vec<FeatureBinning> = specs
            .par_iter()
            .zip(columns.par_iter())
            .map(|(s, col)| {
                FeatureBinning::fit(
                    &s.name,
                    &s.kind,
                    ArrayView1::from(col.as_slice()),
                    labels.view(),
                    &params.binning,
                )
            })
            .collect::<Result<_, _>>()
            .map_err(|e| RoleError(format!("binning its own columns: {e}")))?;
        let kept = PartyWoe {
            features: fitted
                .iter()
                .enumerate()
                .map(|(column, f)| FeatureWoe {
                    feature: f.feature.clone(),
                    column,
                    rule: f.rule.clone(),
                    woe: f.woe(),
                    iv: f.iv,
                    selected: f.iv >= params.min_iv,
                })
                .collect(),
        };
        let own = PartyIv {
            party: ctx.me.0.clone(),
            features: fitted
                .iter()
                .map(|f| FeatureIv {
                    feature: f.feature.clone(),
                    iv: f.iv,
                    bins: f.bins.len(),
                    selected: f.iv >= params.min_iv,
                })
                .collect(),
        };
        let json = serde_json::to_string(&kept).map_err(|e| RoleError(e.to_string()))?;
        ctx.kept.insert(KEPT_KEY.into(), json);
        tracing::info!(
            rows = rows.len(),
            feature_holders = holders.len(),
            own_features = specs.len(),
            "WOE/IV: encrypted labels streamed, own columns binned"
        );
        let mut side = Self {
            params,
            key,
            rows: rows.len() as u64,
            own,
            holders: holders.into_iter().map(|h| (h, Holder::default())).collect(),
            done: false,
        };
        side.maybe_report(ctx, out)?;
        Ok(side)
    }

    /// Whether its part is over (report sent).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A feature holder's payload.
    ///
    /// # Errors
    /// [`RoleError`] for anything but well-formed sums from a feature holder that still owes
    /// them.
    pub fn payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        body: pb::woe_payload::Body,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let refuse = |why: String| Err(RoleError(format!("WOE/IV sums from {from}: {why}")));
        let pb::woe_payload::Body::Sums(sums) = body else {
            return refuse("the label holder only takes sums".into());
        };
        let rows = self.rows;
        let Some(h) = self.holders.get_mut(from) else {
            return refuse("not a feature holder of the job".into());
        };
        if h.table.is_some() {
            return refuse("its sums are complete already".into());
        }
        if *h.total.get_or_insert(sums.total) != sums.total {
            return refuse("the number of features changed".into());
        }
        if sums.features.len() > FEATURES_PER_MESSAGE {
            return refuse(format!("more than {FEATURES_PER_MESSAGE} features in one message"));
        }
        for f in sums.features {
            if f.feature >= sums.total || h.sums.contains_key(&f.feature) {
                return refuse(format!("feature {} is out of range or repeated", f.feature));
            }
            let n_bins = f.counts.len();
            if n_bins == 0 || n_bins > MAX_BINS {
                return refuse(format!("feature {} has {n_bins} bins", f.feature));
            }
            let total: u64 =
                f.counts.iter().try_fold(0u64, |a, &c| a.checked_add(c)).unwrap_or(u64::MAX);
            if total != rows {
                return refuse(format!(
                    "the bins of feature {} do not hold every aligned row",
                    f.feature
                ));
            }
            let cts = elgamal::read_ciphertexts(&f.sums)
                .map_err(|e| RoleError(format!("WOE/IV sums from {from}: {e}")))?;
            if cts.len() != n_bins {
                return refuse(format!(
                    "feature {}: {} sums for {n_bins} bins",
                    f.feature,
                    cts.len()
                ));
            }
            h.sums.insert(
                f.feature,
                Sums { name: f.name, categorical: f.categorical, counts: f.counts, cts },
            );
        }
        if h.sums.len() as u64 == u64::from(sums.total) {
            self.tables(from, out)?;
            self.maybe_report(ctx, out)?;
        }
        Ok(())
    }

    /// Decrypts a complete holder's sums, sends it its WOE tables and keeps its IV table.
    fn tables(&mut self, from: &PartyId, out: &mut StageRoleOut<'_>) -> Result<(), RoleError> {
        let params = self.params;
        let rows = self.rows;
        let key = &self.key;
        let Some(h) = self.holders.get_mut(from) else { return Ok(()) };
        let table = DlogTable::for_max(rows);
        let all: Vec<(&u32, &Sums)> = h.sums.iter().collect();
        let computed: Vec<(pb::WoeFeatureTable, FeatureIv)> = all
            .par_iter()
            .map(|&(&j, s)| {
                let events = key
                    .decrypt_batch_with(&s.cts, &s.counts, &table)
                    .map_err(|e| RoleError(format!("WOE/IV sums from {from}, feature {j}: {e}")))?;
                Ok(feature_table(j, s, &events, &params))
            })
            .collect::<Result<_, RoleError>>()?;
        let mut tables = Vec::with_capacity(computed.len());
        let mut ivs = Vec::with_capacity(computed.len());
        for (t, iv) in computed {
            tables.push(t);
            ivs.push(iv);
        }
        let total = h.total.unwrap_or(0);
        tracing::info!(holder = %from.0, features = total, "WOE/IV: sums decrypted, tables sent");
        h.sums.clear();
        h.table = Some(PartyIv { party: from.0.clone(), features: ivs });
        out.payload(
            std::slice::from_ref(from),
            pb::vertical_payload::Body::Woe(pb::WoePayload {
                body: Some(pb::woe_payload::Body::Tables(pb::WoeTables {
                    total,
                    features: tables,
                })),
            }),
        );
        Ok(())
    }

    /// Reports the IV table once every feature holder's tables are done.
    fn maybe_report(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        if self.done || self.holders.values().any(|h| h.table.is_none()) {
            return Ok(());
        }
        let mut parties = Vec::new();
        for p in &ctx.spec.parties {
            if p == ctx.me {
                parties.push(self.own.clone());
            } else if let Some(t) = self.holders.get(p).and_then(|h| h.table.clone()) {
                parties.push(t);
            }
        }
        let report = IvReport {
            label_holder: ctx.me.0.clone(),
            rows: self.rows,
            method: super::method_name(self.params.binning.method).into(),
            bins: self.params.binning.max_bins,
            min_iv: self.params.min_iv,
            parties,
        };
        let json = serde_json::to_string(&report).map_err(|e| RoleError(e.to_string()))?;
        out.report(pb::vertical_report::Body::Woe(pb::WoeReport {
            body: Some(pb::woe_report::Body::IvJson(json)),
        }));
        self.done = true;
        Ok(())
    }
}

/// Fewest rows a feature holder's bin must have for the label holder to send back its WOE
/// (a smaller non-empty bin gets WOE 0, as if it carried no evidence).
pub const MIN_WOE_ROWS: f64 = 10.0;

/// WOE and IV of one feature holder's feature from its per-bin row and event counts (the
/// missing bin last): the monotone merge of its fine bins when the job asks for it (numeric
/// columns only, as centrally), then [`woe_iv`] with the centralized smoothing.
fn feature_table(
    j: u32,
    s: &Sums,
    events: &[u64],
    params: &WoeParams,
) -> (pb::WoeFeatureTable, FeatureIv) {
    let ev: Vec<f64> = events.iter().map(|&e| e as f64).collect();
    let ne: Vec<f64> = s.counts.iter().zip(events).map(|(&c, &e)| (c - e) as f64).collect();
    let value_bins = ev.len() - 1;
    let (ev, ne, group_ends) = if !s.categorical && params.binning.method == BinningMethod::Monotone
    {
        let groups = monotone_merge(
            &ev[..value_bins],
            &ne[..value_bins],
            params.binning.min_bin_fraction,
            params.binning.max_bins,
        );
        let mut me: Vec<f64> = groups.iter().map(|g| ev[g.clone()].iter().sum()).collect();
        let mut mn: Vec<f64> = groups.iter().map(|g| ne[g.clone()].iter().sum()).collect();
        me.push(ev[value_bins]);
        mn.push(ne[value_bins]);
        let ends = groups.iter().map(|g| g.end as u32).collect();
        (me, mn, ends)
    } else {
        (ev, ne, Vec::new())
    };
    let (mut woe, iv, _) = woe_iv(&ev, &ne, WOE_SMOOTHING);
    // With its own row counts, a feature holder reads each bin's event count off its WOE: a
    // bin of a few rows would tell it those rows' labels. Such bins go back as no evidence.
    for ((w, e), n) in woe.iter_mut().zip(&ev).zip(&ne) {
        if e + n > 0.0 && e + n < MIN_WOE_ROWS {
            *w = 0.0;
        }
    }
    let selected = iv >= params.min_iv;
    let bins = woe.len();
    (
        pb::WoeFeatureTable { feature: j, group_ends, woe, iv, selected },
        FeatureIv { feature: s.name.clone(), iv, bins, selected },
    )
}
