//! A feature holder's side of federated WOE/IV (see [`super`]): cuts its own columns alone
//! with the centralized binner's unlabeled rule, sums the label holder's exponential-ElGamal
//! ciphertexts (ElGamal 1985, exponential variant) per bin, rerandomizes every sum and
//! returns sums and row counts; then applies the label holder's merge of its fine bins and
//! keeps the WOE of its bins.
//!
//! It never sees a label: only ciphertexts under a key it does not hold, then the WOE of its
//! own bins. What it checks: every payload comes from the job's label holder; the key is a
//! valid ristretto255 point and names the stage's scheme; the ciphertexts are canonical, in
//! order, one per aligned row; the tables cover each of its features once, with as many WOE
//! values as bins and a merge that fits its fine bins.

use fedcredit_crypto::elgamal::{self, Ciphertext, PublicKey};
use fedcredit_models::binning::{
    BinRule, BinningMethod, FeatureBinning, merged_edges, rule_bin_of, unlabeled_rule,
};
use fedcredit_models::{FeatureKind, FeatureSpec};
use fedcredit_proto::pb;
use ndarray::ArrayView1;
use rayon::prelude::*;

use super::{
    FEATURES_PER_MESSAGE, FeatureWoe, KEPT_KEY, MAX_BINS, PartyWoe, SCHEME, WoeParams,
    aligned_column,
};
use crate::ids::PartyId;
use crate::protocol::{CsRng, RoleError};
use crate::vertical::{PartyCtx, StageRoleOut};

/// One of its columns, cut.
#[derive(Debug)]
struct Cut {
    spec: FeatureSpec,
    rule: BinRule,
    n_bins: usize,
    bins: Vec<u16>,
    counts: Vec<u64>,
}

/// The feature holder's state in the stage.
#[derive(Debug)]
pub struct HolderSide {
    params: WoeParams,
    label_holder: PartyId,
    rows: usize,
    cuts: Vec<Cut>,
    key: Option<PublicKey>,
    cts: Vec<Ciphertext>,
    sent: bool,
    done: bool,
}

impl HolderSide {
    /// Opens the stage at a feature holder: cuts its columns over the aligned rows.
    ///
    /// # Errors
    /// [`RoleError`] when a column cannot be cut (a text cell that is not a level) or has
    /// more than [`MAX_BINS`] bins.
    pub fn start(ctx: &mut PartyCtx<'_>, params: WoeParams) -> Result<Self, RoleError> {
        let rows =
            ctx.alignment.as_ref().map(|a| super::super::fit_rows(ctx.spec, a)).unwrap_or_default();
        if rows.iter().any(|&r| r as usize >= ctx.table.n_rows()) {
            return Err(RoleError("the alignment names a row beyond the table".into()));
        }
        let specs = ctx.table.features.specs.clone();
        let columns: Vec<Vec<f64>> =
            (0..specs.len()).map(|j| aligned_column(ctx, &rows, j)).collect();
        let fine = params.fine_bins();
        let cuts = specs
            .into_par_iter()
            .zip(columns.into_par_iter())
            .map(|(spec, col)| cut(spec, &col, fine, &params))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            params,
            label_holder: ctx.vertical.label_holder.clone(),
            rows: rows.len(),
            cuts,
            key: None,
            cts: Vec::new(),
            sent: false,
            done: false,
        })
    }

    /// Whether its part is over (tables kept, acknowledgement sent).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A payload from the label holder.
    ///
    /// # Errors
    /// [`RoleError`] for anything out of order, from another party or malformed.
    pub fn payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        body: pb::woe_payload::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let refuse = |why: &str| Err(RoleError(format!("WOE/IV payload from {from}: {why}")));
        if *from != self.label_holder {
            return refuse("only the label holder sends WOE/IV payloads");
        }
        match body {
            pb::woe_payload::Body::Key(k) => {
                if self.key.is_some() {
                    return refuse("a second key");
                }
                if k.scheme != SCHEME {
                    return refuse("not the stage's encryption scheme");
                }
                if k.rows != self.rows as u64 {
                    return refuse("the number of rows differs from the alignment");
                }
                let key = PublicKey::from_bytes(&k.public_key)
                    .map_err(|e| RoleError(format!("WOE/IV key from {from}: {e}")))?;
                self.key = Some(key);
                self.cts.reserve_exact(self.rows);
                self.maybe_sum(rng, out)
            }
            pb::woe_payload::Body::Rows(r) => {
                if self.key.is_none() || self.sent {
                    return refuse("ciphertexts out of order");
                }
                if r.offset != self.cts.len() as u64 || r.total != self.rows as u64 {
                    return refuse("ciphertexts out of order");
                }
                let cts = elgamal::read_ciphertexts(&r.ciphertexts)
                    .map_err(|e| RoleError(format!("WOE/IV rows from {from}: {e}")))?;
                if cts.is_empty() || self.cts.len() + cts.len() > self.rows {
                    return refuse("more ciphertexts than aligned rows");
                }
                self.cts.extend(cts);
                self.maybe_sum(rng, out)
            }
            pb::woe_payload::Body::Tables(t) => {
                if !self.sent || self.done {
                    return refuse("tables out of order");
                }
                self.tables(ctx, t, out)
            }
            pb::woe_payload::Body::Sums(_) => refuse("a feature holder does not take sums"),
        }
    }

    /// Once every row's ciphertext is in: per-bin sums, rerandomized, to the label holder.
    fn maybe_sum(&mut self, rng: &mut CsRng, out: &mut StageRoleOut<'_>) -> Result<(), RoleError> {
        let Some(key) = &self.key else { return Ok(()) };
        if self.cts.len() < self.rows || self.sent {
            return Ok(());
        }
        let binnings: Vec<(&[u16], usize)> =
            self.cuts.iter().map(|c| (c.bins.as_slice(), c.n_bins)).collect();
        let sums = elgamal::sum_by_bin_features(&self.cts, &binnings)
            .map_err(|e| RoleError(format!("WOE/IV sums: {e}")))?;
        let flat: Vec<Ciphertext> = sums.into_iter().flatten().collect();
        let fresh = key.rerandomize_batch(&flat, rng);
        let bytes = elgamal::write_ciphertexts(&fresh);
        let total =
            u32::try_from(self.cuts.len()).map_err(|_| RoleError("too many features".into()))?;
        let mut features = Vec::with_capacity(self.cuts.len());
        let mut at = 0;
        for (j, c) in self.cuts.iter().enumerate() {
            let len = c.n_bins * elgamal::CIPHERTEXT_BYTES;
            features.push(pb::WoeFeatureSums {
                feature: j as u32,
                categorical: matches!(c.spec.kind, FeatureKind::Categorical { .. }),
                counts: c.counts.clone(),
                sums: bytes[at..at + len].to_vec(),
                name: c.spec.name.clone(),
            });
            at += len;
        }
        let mut messages = Vec::new();
        let mut rest = features.into_iter().peekable();
        loop {
            let chunk: Vec<pb::WoeFeatureSums> = rest.by_ref().take(FEATURES_PER_MESSAGE).collect();
            messages.push(pb::vertical_payload::Body::Woe(pb::WoePayload {
                body: Some(pb::woe_payload::Body::Sums(pb::WoeSums { total, features: chunk })),
            }));
            if rest.peek().is_none() {
                break;
            }
        }
        out.stream(std::slice::from_ref(&self.label_holder), messages.into_iter());
        tracing::info!(rows = self.rows, features = self.cuts.len(), "WOE/IV: encrypted sums sent");
        self.cts = Vec::new();
        self.sent = true;
        Ok(())
    }

    /// The label holder's merge and WOE of its bins: kept for later stages.
    fn tables(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        t: pb::WoeTables,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let refuse = |why: String| Err(RoleError(format!("WOE tables: {why}")));
        if t.total as usize != self.cuts.len() || t.features.len() != self.cuts.len() {
            return refuse(format!("{} tables for {} features", t.features.len(), self.cuts.len()));
        }
        let mut kept: Vec<Option<FeatureWoe>> = vec![None; self.cuts.len()];
        for f in t.features {
            let j = f.feature as usize;
            let Some(c) = self.cuts.get(j) else {
                return refuse(format!("feature {j} is not one of its columns"));
            };
            if kept[j].is_some() {
                return refuse(format!("feature {j} twice"));
            }
            let monotone = self.params.binning.method == BinningMethod::Monotone
                && matches!(c.spec.kind, FeatureKind::Numeric);
            let rule = match (&c.rule, monotone) {
                (BinRule::Numeric { edges }, true) => {
                    let groups = groups_of(&f.group_ends, edges.len() + 1).ok_or_else(|| {
                        RoleError(format!("WOE tables: bad merge of feature {j}"))
                    })?;
                    BinRule::Numeric { edges: merged_edges(edges, &groups) }
                }
                _ if !f.group_ends.is_empty() => {
                    return refuse(format!("feature {j} cannot be merged"));
                }
                (r, _) => r.clone(),
            };
            if f.woe.len() != FeatureBinning::n_bins_of(&rule)
                || f.woe.iter().any(|w| !w.is_finite())
            {
                return refuse(format!("feature {j}: WOE does not fit its bins"));
            }
            kept[j] = Some(FeatureWoe {
                feature: c.spec.name.clone(),
                column: j,
                rule,
                woe: f.woe,
                iv: f.iv,
                selected: f.selected,
            });
        }
        let features: Vec<FeatureWoe> = kept.into_iter().flatten().collect();
        let n = features.len() as u32;
        let json =
            serde_json::to_string(&PartyWoe { features }).map_err(|e| RoleError(e.to_string()))?;
        ctx.kept.insert(KEPT_KEY.into(), json);
        out.report(pb::vertical_report::Body::Woe(pb::WoeReport {
            body: Some(pb::woe_report::Body::Received(pb::WoeReceived { features: n })),
        }));
        self.cuts = Vec::new();
        self.done = true;
        Ok(())
    }
}

/// Cuts one column over the aligned rows: its rule, the bin of every row and rows per bin.
fn cut(spec: FeatureSpec, col: &[f64], fine: usize, params: &WoeParams) -> Result<Cut, RoleError> {
    let values = ArrayView1::from(col);
    let max_bins = match spec.kind {
        FeatureKind::Numeric => fine,
        FeatureKind::Categorical { .. } => params.binning.max_bins,
    };
    let rule =
        unlabeled_rule(&spec.name, &spec.kind, values, max_bins, params.binning.min_bin_fraction)
            .map_err(|e| RoleError(format!("cutting its columns: {e}")))?;
    let n_bins = FeatureBinning::n_bins_of(&rule);
    if n_bins > MAX_BINS {
        return Err(RoleError(format!(
            "column `{}` has {n_bins} bins, more than {MAX_BINS}",
            spec.name
        )));
    }
    let mut counts = vec![0u64; n_bins];
    let mut bins = Vec::with_capacity(col.len());
    for &v in col {
        let b = rule_bin_of(&rule, n_bins, &spec.name, v)
            .map_err(|e| RoleError(format!("cutting its columns: {e}")))?;
        counts[b] += 1;
        bins.push(b as u16);
    }
    Ok(Cut { spec, rule, n_bins, bins, counts })
}

/// Merged groups from their ends: strictly increasing, the last one `fine`.
fn groups_of(ends: &[u32], fine: usize) -> Option<Vec<std::ops::Range<usize>>> {
    if ends.last().map(|&e| e as usize) != Some(fine) {
        return None;
    }
    let mut start = 0;
    let mut groups = Vec::with_capacity(ends.len());
    for &e in ends {
        let e = e as usize;
        if e <= start {
            return None;
        }
        groups.push(start..e);
        start = e;
    }
    Some(groups)
}
