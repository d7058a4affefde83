//! The synthetic enterprise ecosystem: the project's embedded default dataset.
//!
//! A seeded simulation of small and medium enterprises (SMEs) around a supply-chain graph,
//! seen monthly by three parties that hold different columns about the same enterprises,
//! keyed by their unified social credit code (GB 32100-2015):
//!
//! | party | table | holds |
//! |---|---|---|
//! | bank (label holder) | `bank` | credit lines, repayment behaviour, deposits, guarantees, the default label |
//! | tax bureau | `tax`, `links` | VAT invoices, tax paid, filing behaviour, counterparties, SME supplier links |
//! | e-commerce platform | `platform` | GMV, orders, returns, buyers, logistics, ratings, the seller's sector |
//!
//! The tax bureau holds the links ([`Ecosystem::supplier_links`], `links.csv`); they never
//! leave it: no other party sees them and they are not columns of the joined table.
//!
//! # The world
//!
//! - **Enterprises** have a sector, a region, a size (micro / small / medium, which scales
//!   every amount with a lognormal factor), a founding month and an 18-character unified
//!   social credit code with a valid check character ([`uscc_check_char`]).
//! - **Supply chain.** A few hundred core enterprises; each SME supplies or buys from 1–3 of
//!   them, chosen with Zipf-like popularity so that big cores have many suppliers. Each core
//!   has a latent monthly *distress* process: AR(1) noise, its sector's cycle, and rare crises
//!   (1.5 % a month) whose pressure builds distress over the following months until it peaks
//!   and fades. A distressed core stretches its suppliers' receivables and cuts their orders,
//!   which raises their risk (customers of a core are hit half as hard), so defaults cluster
//!   around cores.
//! - **Multi-tier supply network.** Every SME has a supply tier ([`Enterprise::tier`]): 55 %
//!   are tier 1, the direct suppliers of cores above; 25 %, 13 % and 7 % are tiers 2, 3 and 4,
//!   and each of them supplies 1 or 2 SMEs of the tier above ([`Enterprise::customers`];
//!   tier 2 supplies tier 1, tier 3 tier 2, tier 4 tier 3), chosen with Zipf-like popularity,
//!   so the links form a DAG by tiers (suppliers of suppliers). Distress flows down it with
//!   a one-month lag: each month an SME passes on its *distress* — its core exposure, the
//!   pressure of its own customers and its operating stress above 1.5 — and in the next month
//!   its suppliers' operating stress *O* rises by `0.6 × dependence × link weight` times it.
//!   So a core's crisis reaches tier 2 at about a quarter of its strength on tier 1, tier 3 at
//!   a sixteenth, and tier 4 hardly at all. A customer's default is a sharp push: it stops
//!   ordering, and from the next month its suppliers' *O* rises by
//!   `1.5 × dependence × link weight`, fading by 15 % a month as they find other buyers. The
//!   tax bureau sees it through sales, invoices and tax paid.
//! - **Latent risk.** Each enterprise has three monthly latent stress components, each an
//!   AR(1) process around a static baseline plus a common health factor:
//!   financial stress *F* (liquidity, leverage; seen mostly by the bank), operating stress *O*
//!   (sales and invoices; seen mostly by the tax bureau, and moved by the sector cycle, core
//!   distress and the distress of customer SMEs) and market stress *M* (online demand and
//!   service quality; seen mostly by the platform). Young and micro enterprises are riskier.
//! - **Default.** Each month an enterprise defaults with probability
//!   `sigmoid(-7.7 + 2.5 (F + O + M) + interactions + 0.3 exposure)`, where the interactions
//!   are *high financial stress and falling sales* (`relu(F - 0.3)` times the 3-month rise of
//!   `O`) and *a market-stress spike during core distress* (the 3-month rise of `M` times
//!   `0.3 + exposure`). The label of a snapshot at month `t` is "defaults within months
//!   `t+1 ..= t+horizon`"; the simulation runs `horizon` hidden months past the last snapshot
//!   so every snapshot month has a full label horizon. Defaulted enterprises leave the tables.
//! - **Population.** The enterprises existing at month 0 are survivors of the 15-month
//!   burn-in (one that defaults there is replaced by a fresh draw), as in a portfolio in steady
//!   state; 12 % of the enterprises are new entrants founded during the snapshot months. A
//!   snapshot holds the enterprises founded and not yet defaulted (about 83–86 % of
//!   `n_enterprises`), and the default rate stays near 6 % from month to month.
//! - **Observations.** Each party sees noisy, partly nonlinear monthly views of the latent
//!   components: amounts are lognormal in the enterprise's size, overdue days and filing
//!   delays are mostly zero (point masses), windowed features (overdue count over 12 months,
//!   year-on-year revenue growth, 3-month order growth, deposit trend) read up to 15 months of
//!   history (the simulation has a hidden 15-month burn-in), and values are missing where a
//!   real party would lack them: enterprises not selling on the platform have no platform
//!   features, young ones have no year-on-year growth, sellers with few orders have no rating,
//!   enterprises without a credit line have no utilisation.
//!
//! The observation noise of enterprise `i` in month `τ` comes from a fixed position of a
//! ChaCha8 stream (stream `i`, word offset proportional to `τ`), so overlapping windows of
//! different snapshots see the same monthly values and any snapshot can be computed alone.
//!
//! # Columns
//!
//! - `bank`: `id`, `loan_balance`, `credit_utilisation`, `overdue_days_max`,
//!   `overdue_count_12m`, `deposit_balance_trend`, `guarantee_count`, `guaranteed_by_core`
//!   (bool), `num_lenders`, label `default_12m` (for a 12-month horizon).
//! - `tax`: `id`, `vat_invoice_amount`, `invoice_count`, `tax_paid`, `filing_delay_days`,
//!   `revenue_growth_yoy`, `counterparty_count`, `top_customer_share`, `tax_arrears` (bool).
//! - `platform`: `id`, `gmv`, `order_count`, `order_growth_3m`, `return_rate`,
//!   `buyer_concentration`, `logistics_delay_days`, `active_days`, `rating`, `sector` (text).
//! - `links` (the tax bureau's, `links.csv`): `supplier_id`, `customer_id`: one row per
//!   SME-to-SME supplier link between enterprises of the written snapshot(s).
//!
//! # Calibration
//!
//! Test AUC of the project's models trained on each party's columns alone and on all three
//! together: default configuration, seed 7, 30 % test rows by
//! [`stratified_split`](crate::stratified_split) (seed 1), `GbdtParams::default()` and the
//! default `LogisticPipeline` of fedcredit-models. Measured with the multi-tier supply
//! network by the ignored test `synthetic_calibration_table` of `datasets/tests/it.rs`
//! (`SYNTHETIC_CALIBRATION=20000:11,100000:11,100000:0,100000:23`; the links themselves are
//! not columns of any table).
//!
//! | enterprises, month | rows | default rate | model | bank | tax | platform | all three |
//! |---|---:|---:|---|---:|---:|---:|---:|
//! | 20,000, month 11 | 16,677 | 6.03 % | GBDT | 0.688 | 0.661 | 0.620 | 0.823 |
//! | 20,000, month 11 | 16,677 | 6.03 % | LR | 0.714 | 0.662 | 0.632 | 0.826 |
//! | 100,000, month 11 | 83,709 | 5.84 % | GBDT | 0.702 | 0.690 | 0.634 | 0.843 |
//! | 100,000, month 11 | 83,709 | 5.84 % | LR | 0.710 | 0.689 | 0.644 | 0.831 |
//! | 100,000, month 0 | 83,636 | 7.11 % | GBDT | 0.686 | 0.667 | 0.661 | 0.841 |
//! | 100,000, month 0 | 83,636 | 7.11 % | LR | 0.695 | 0.659 | 0.666 | 0.834 |
//! | 100,000, month 23 | 84,953 | 6.04 % | GBDT | 0.698 | 0.707 | 0.666 | 0.840 |
//! | 100,000, month 23 | 84,953 | 6.04 % | LR | 0.711 | 0.705 | 0.675 | 0.831 |
//!
//! The true latent risk `F + O + M` at the snapshot month scores 0.910 on the
//! 100,000-enterprise month-11 snapshot (0.911 on its test rows): the rest is the future.
//! Measured before the multi-tier network, on its 100,000-enterprise month-11 CSV files
//! (83,858 rows, default rate 5.71 %), LightGBM 4.7 (200 trees, learning rate 0.05, 7 leaves,
//! 100 rows per leaf; 3-fold cross-validation) agreed with the project's models of the time:
//! bank 0.711, tax 0.697, platform 0.649, all three 0.839; it has not been re-run since. The
//! integration test `synthetic_parties_together_beat_each_alone` checks the first row (all
//! three above each party alone by more than 0.05).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use fedcredit_models::{FeatureSpec, Features};
use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use crate::DataError;
use crate::table::Table;

/// The 31 characters of unified social credit codes, in value order (GB 32100-2015).
pub const USCC_CHARSET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Hidden months simulated before month 0, so 15-month windows exist from the first snapshot.
const BURN_IN: usize = 15;
/// Months of history a snapshot reads (`t - 14 ..= t`).
const WINDOW: usize = 15;
/// Persistence of the monthly latent stress components.
const AR_PHI: f64 = 0.92;
/// Standard deviation of their monthly innovations.
const AR_INNOVATION: f64 = 0.15;
/// Monthly default hazard: intercept on the logit scale (sets the default rate).
const HAZARD_INTERCEPT: f64 = -7.7;
/// Weight of each of F, O and M in the hazard's logit.
const HAZARD_SLOPE: f64 = 2.5;
/// Weight of "high financial stress and falling sales" (`relu(F - 0.3) * relu(ΔO over 3 months)`).
const HAZARD_FALLING_SALES: f64 = 1.0;
/// Weight of "market-stress spike during core distress" (`relu(ΔM over 3 months) * (0.3 + exposure)`).
const HAZARD_SPIKE_DISTRESS: f64 = 1.2;
/// Share of enterprises founded during the snapshot months (the rest exist at month 0).
const ENTRANT_SHARE: f64 = 0.12;
/// ChaCha words reserved per enterprise-month of observation noise.
const WORDS_PER_MONTH: u128 = 512;
/// Cumulative shares of SMEs in supply tiers 1 to 4 (55 %, 25 %, 13 %, 7 %).
const TIER_CUMULATIVE: [f64; 4] = [0.55, 0.80, 0.93, 1.0];
/// Deepest supply tier.
const MAX_TIER: u8 = 4;
/// Zipf exponent of an SME's popularity as a customer of the tier below.
const SME_POPULARITY: f64 = 0.5;
/// Share of a customer SME's distress passed to its suppliers (the per-tier decay, before the
/// supplier's dependence on its customers).
const TIER_DECAY: f64 = 0.6;
/// Operating stress above which an SME's own stress is part of the distress it passes on.
const CUSTOMER_DISTRESS_O: f64 = 1.5;
/// Push on a supplier's operating stress (before its dependence and the link's weight) in the
/// month after a customer SME defaults.
const CUSTOMER_DEFAULT_SHOCK: f64 = 1.5;
/// Monthly persistence of that push (the supplier slowly finds other customers).
const CUSTOMER_DEFAULT_DECAY: f64 = 0.85;

/// Settings of the generator.
#[derive(Debug, Clone, PartialEq)]
pub struct EcosystemConfig {
    /// Number of SMEs (rows of a snapshot before defaults and late foundings); defaults to
    /// `10_000`.
    pub n_enterprises: usize,
    /// Number of monthly snapshots, months `0 .. n_months`; defaults to `24`.
    pub n_months: usize,
    /// Number of core enterprises in the supply-chain graph; defaults to `300`.
    pub n_cores: usize,
    /// Seed of every random draw; defaults to `20_240_601`.
    pub seed: u64,
    /// The label's horizon: default within this many months after the snapshot; defaults
    /// to `12`.
    pub default_horizon_months: usize,
}

impl Default for EcosystemConfig {
    fn default() -> Self {
        Self {
            n_enterprises: 10_000,
            n_months: 24,
            n_cores: 300,
            seed: 20_240_601,
            default_horizon_months: 12,
        }
    }
}

/// Enterprise size class; scales every amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Micro enterprise (about 0.15 M CNY revenue a month).
    Micro,
    /// Small enterprise (about 1.2 M CNY a month).
    Small,
    /// Medium enterprise (about 8 M CNY a month).
    Medium,
}

impl Size {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Size::Micro => "micro",
            Size::Small => "small",
            Size::Medium => "medium",
        }
    }

    fn revenue_median(self) -> f64 {
        match self {
            Size::Micro => 150_000.0,
            Size::Small => 1_200_000.0,
            Size::Medium => 8_000_000.0,
        }
    }

    fn risk(self) -> f64 {
        match self {
            Size::Micro => 0.25,
            Size::Small => 0.0,
            Size::Medium => -0.25,
        }
    }
}

/// How an SME is tied to a core enterprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRole {
    /// The SME sells to the core (its receivables depend on the core).
    Supplier,
    /// The SME buys from the core.
    Customer,
}

/// One edge of the supply-chain graph.
#[derive(Debug, Clone, PartialEq)]
pub struct SupplyLink {
    /// Index into [`Ecosystem::cores`].
    pub core: usize,
    /// Supplier or customer of the core.
    pub role: LinkRole,
    /// Share of the SME's core-related business going through this link (sums to 1).
    pub weight: f64,
}

/// A core (large) enterprise of the supply-chain graph; not itself in the party tables.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreEnterprise {
    /// Unified social credit code.
    pub id: String,
    /// Sector name.
    pub sector: &'static str,
    /// Latent distress per internal month (burn-in first); see [`Ecosystem::core_distress`].
    distress: Vec<f64>,
}

/// One SME with its static attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Enterprise {
    /// Unified social credit code (18 characters, valid check character).
    pub id: String,
    /// Sector name (`manufacturing`, `wholesale`, ...).
    pub sector: &'static str,
    /// Region name (`shanghai`, ...); its division code is in the id.
    pub region: &'static str,
    /// Size class.
    pub size: Size,
    /// Month of founding (negative: before month 0).
    pub founded_month: i64,
    /// Month it started selling on the platform, if it does.
    pub platform_from: Option<i64>,
    /// Links to core enterprises (1 to 3).
    pub links: Vec<SupplyLink>,
    /// Supply tier: 1 for an SME whose supplier relations end at core enterprises, `k` (2 to
    /// 4) for one that also supplies SMEs of tier `k - 1` (suppliers of suppliers).
    pub tier: u8,
    /// The SMEs it supplies, as indices into [`Ecosystem::enterprises`]: 1 or 2 SMEs of tier
    /// `tier - 1` for tiers 2 to 4, none for tier 1. Their distress and defaults raise its
    /// operating stress in the following months; see [`Ecosystem::supplier_links`].
    pub customers: Vec<usize>,
    /// Share of its SME sales going to each of `customers` (sums to 1).
    customer_weights: Vec<f64>,
    /// Month of default, if it defaults within the simulated months (at most
    /// `n_months - 1 + default_horizon_months`).
    pub default_month: Option<i64>,
    sector_idx: usize,
    region_idx: usize,
    scale: f64,
    dependence: f64,
    top_link_weight: f64,
    credit_limit: Option<f64>,
    guarantee_count: u32,
    guaranteed_by_core: bool,
    base_lenders: u32,
    online_share: f64,
    counterparty_base: f64,
}

impl Enterprise {
    /// Age in years at `month` (negative before founding).
    pub fn age_years(&self, month: i64) -> f64 {
        (month - self.founded_month) as f64 / 12.0
    }

    /// True when the enterprise exists and has not defaulted at `month`.
    pub fn alive_at(&self, month: i64) -> bool {
        self.founded_month <= month && self.default_month.is_none_or(|d| d > month)
    }
}

/// A generated ecosystem: enterprises, cores, latent paths and defaults.
pub struct Ecosystem {
    config: EcosystemConfig,
    enterprises: Vec<Enterprise>,
    cores: Vec<CoreEnterprise>,
    /// Per sector, per internal month.
    sector_cycle: Vec<Vec<f64>>,
    /// `[F, O, M]` per enterprise and internal month, row-major by enterprise.
    latent: Vec<[f32; 3]>,
    obs_seed: [u8; 32],
}

impl fmt::Debug for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ecosystem")
            .field("config", &self.config)
            .field("enterprises", &self.enterprises.len())
            .field("cores", &self.cores.len())
            .finish_non_exhaustive()
    }
}

/// The three parties' tables of one month.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyTables {
    /// The bank's table, with the label.
    pub bank: Table,
    /// The tax bureau's table.
    pub tax: Table,
    /// The platform's table.
    pub platform: Table,
}

impl PartyTables {
    /// The three tables in party order (bank, tax, platform).
    pub fn to_vec(&self) -> Vec<Table> {
        vec![self.bank.clone(), self.tax.clone(), self.platform.clone()]
    }
}

/// Column names of the bank table's features.
pub const BANK_COLUMNS: [&str; 8] = [
    "loan_balance",
    "credit_utilisation",
    "overdue_days_max",
    "overdue_count_12m",
    "deposit_balance_trend",
    "guarantee_count",
    "guaranteed_by_core",
    "num_lenders",
];
/// Column names of the tax table's features.
pub const TAX_COLUMNS: [&str; 8] = [
    "vat_invoice_amount",
    "invoice_count",
    "tax_paid",
    "filing_delay_days",
    "revenue_growth_yoy",
    "counterparty_count",
    "top_customer_share",
    "tax_arrears",
];
/// Column names of the platform table's numeric features (followed by `sector`, text).
pub const PLATFORM_COLUMNS: [&str; 8] = [
    "gmv",
    "order_count",
    "order_growth_3m",
    "return_rate",
    "buyer_concentration",
    "logistics_delay_days",
    "active_days",
    "rating",
];

/// Generates an ecosystem.
///
/// # Errors
/// [`DataError::InvalidParam`] when `n_enterprises`, `n_months`, `n_cores` or
/// `default_horizon_months` is 0.
pub fn generate(config: &EcosystemConfig) -> Result<Ecosystem, DataError> {
    for (name, v) in [
        ("n_enterprises", config.n_enterprises),
        ("n_months", config.n_months),
        ("n_cores", config.n_cores),
        ("default_horizon_months", config.default_horizon_months),
    ] {
        if v == 0 {
            return Err(DataError::InvalidParam { name, reason: "must be at least 1".into() });
        }
    }
    let n = config.n_enterprises;
    let n_internal = BURN_IN + config.n_months + config.default_horizon_months;
    let mut master = ChaCha8Rng::seed_from_u64(config.seed);
    let world_seed: [u8; 32] = master.random();
    let enterprise_seed: [u8; 32] = master.random();
    let obs_seed: [u8; 32] = master.random();
    let network_seed: [u8; 32] = master.random();

    let mut world = ChaCha8Rng::from_seed(world_seed);
    let sector_cycle = simulate_sector_cycles(&mut world, n_internal);
    let mut used_ids = HashSet::new();
    let cores = simulate_cores(&mut world, config.n_cores, &sector_cycle, &mut used_ids);
    let popularity = zipf_cumulative(config.n_cores, 0.8);
    let network = draw_network(&mut ChaCha8Rng::from_seed(network_seed), n);

    // One forward pass, tier by tier: an SME's customers (tier above) are simulated before it,
    // and month `k` of a supplier reads its customers' months before `k` only.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| network.tier[i]);
    let mut slots: Vec<Option<Enterprise>> = vec![None; n];
    let mut latent = vec![[0f32; 3]; n * n_internal];
    let mut passed = vec![0f32; n * n_internal];
    for i in order {
        let pressure = customer_pressure(&network, i, &slots, &passed, n_internal);
        let mut rng = ChaCha8Rng::from_seed(enterprise_seed);
        rng.set_stream(i as u64);
        let rows = i * n_internal..(i + 1) * n_internal;
        // The enterprises existing at month 0 are survivors of the burn-in: one that defaults
        // before month 0 is replaced by a fresh draw, so the month-0 population is already
        // thinned of the riskiest firms as a portfolio in steady state is.
        loop {
            let mut e = draw_enterprise(&mut rng, config, &popularity, &mut used_ids);
            e.tier = network.tier[i];
            e.customers.clone_from(&network.customers[i]);
            e.customer_weights.clone_from(&network.weights[i]);
            simulate_enterprise(
                &mut rng,
                &mut e,
                &cores,
                &sector_cycle,
                &pressure,
                &mut latent[rows.clone()],
                &mut passed[rows.clone()],
            );
            if e.default_month.is_some_and(|d| d <= 0) {
                used_ids.remove(&e.id);
                continue;
            }
            slots[i] = Some(e);
            break;
        }
    }
    let enterprises: Vec<Enterprise> = slots.into_iter().flatten().collect();
    Ok(Ecosystem { config: config.clone(), enterprises, cores, sector_cycle, latent, obs_seed })
}

impl Ecosystem {
    /// The settings it was generated with.
    pub fn config(&self) -> &EcosystemConfig {
        &self.config
    }

    /// The SMEs, in generation order.
    pub fn enterprises(&self) -> &[Enterprise] {
        &self.enterprises
    }

    /// The core enterprises.
    pub fn cores(&self) -> &[CoreEnterprise] {
        &self.cores
    }

    /// Latent distress of core `core` at `month` (negative months reach into the burn-in).
    pub fn core_distress(&self, core: usize, month: i64) -> Option<f64> {
        let c = self.cores.get(core)?;
        let k = usize::try_from(month + BURN_IN as i64).ok()?;
        c.distress.get(k).copied()
    }

    /// Sector cycle value of sector `name` at `month` (higher is worse).
    pub fn sector_cycle(&self, name: &str, month: i64) -> Option<f64> {
        let s = SECTORS.iter().position(|s| s.name == name)?;
        let k = usize::try_from(month + BURN_IN as i64).ok()?;
        self.sector_cycle[s].get(k).copied()
    }

    /// The latent stress components `[F, O, M]` (financial, operating, market) of enterprise
    /// `enterprise` at `month`: the ground truth behind the tables, for experiments and
    /// tests. `None` out of range (negative months reach into the burn-in).
    pub fn latent_risk(&self, enterprise: usize, month: i64) -> Option<[f64; 3]> {
        if enterprise >= self.enterprises.len() {
            return None;
        }
        let k = usize::try_from(month + BURN_IN as i64).ok()?;
        (k < self.n_internal()).then(|| self.latent(enterprise, k))
    }

    /// The SME-to-SME supplier links alive at snapshot `month`: `(supplier id, customer id)`
    /// for every SME and each of its [`Enterprise::customers`] when both exist and have not
    /// defaulted at `month`, suppliers in generation order. These are what the tax bureau
    /// knows from invoice counterparties (`links.csv` of [`Ecosystem::write_csv`]). Empty
    /// when `month >= n_months`.
    pub fn supplier_links(&self, month: usize) -> Vec<(String, String)> {
        if month >= self.config.n_months {
            return Vec::new();
        }
        self.link_pairs(&[month])
            .into_iter()
            .map(|(s, c)| (self.enterprises[s].id.clone(), self.enterprises[c].id.clone()))
            .collect()
    }

    /// `(supplier, customer)` index pairs both alive at one of `months` at least.
    fn link_pairs(&self, months: &[usize]) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (s, e) in self.enterprises.iter().enumerate() {
            for &c in &e.customers {
                let Some(customer) = self.enterprises.get(c) else { continue };
                let both = |m: &usize| e.alive_at(*m as i64) && customer.alive_at(*m as i64);
                if months.iter().any(both) {
                    pairs.push((s, c));
                }
            }
        }
        pairs
    }

    /// Name of the label column (`default_12m` for a 12-month horizon).
    pub fn label_column(&self) -> String {
        format!("default_{}m", self.config.default_horizon_months)
    }

    /// The three parties' tables at `month`: one row per enterprise alive at `month`
    /// (founded, not yet defaulted), in generation order; the bank's table has the label.
    ///
    /// # Errors
    /// [`DataError::InvalidParam`] when `month >= n_months`.
    pub fn snapshot(&self, month: usize) -> Result<PartyTables, DataError> {
        self.check_month(month)?;
        let mut rows = Vec::new();
        self.for_each_row(&[month], |r| {
            rows.push(r.clone());
            Ok::<(), DataError>(())
        })?;
        let virtual_dir = PathBuf::from(format!("synthetic/month-{month}"));
        Ok(self.tables(&rows, &virtual_dir))
    }

    /// Writes `bank.csv`, `tax.csv` and `platform.csv` into `dir` (created if needed): the
    /// snapshot of `month`, or every month with a leading `month` column when `None`.
    /// Returns the three paths. Missing values are empty cells, booleans `true`/`false`.
    ///
    /// Beside them it writes the tax bureau's `links.csv` (not among the returned paths, which
    /// are the party tables): header `supplier_id,customer_id`, one row per SME-to-SME
    /// supplier link whose two enterprises are both alive at the written month (at one written
    /// month at least when `None`), as in [`Ecosystem::supplier_links`].
    ///
    /// # Errors
    /// [`DataError::InvalidParam`] for a month out of range, [`DataError::Write`] on I/O errors.
    pub fn write_csv(&self, dir: &Path, month: Option<usize>) -> Result<Vec<PathBuf>, DataError> {
        let months: Vec<usize> = match month {
            Some(m) => {
                self.check_month(m)?;
                vec![m]
            }
            None => (0..self.config.n_months).collect(),
        };
        fs::create_dir_all(dir)
            .map_err(|e| DataError::Write { path: dir.to_path_buf(), cause: e.to_string() })?;
        let paths: Vec<PathBuf> =
            ["bank", "tax", "platform"].iter().map(|p| dir.join(format!("{p}.csv"))).collect();
        let write_error = |path: &Path, e: std::io::Error| DataError::Write {
            path: path.to_path_buf(),
            cause: e.to_string(),
        };
        let mut writers = Vec::with_capacity(3);
        for p in &paths {
            writers.push(BufWriter::new(fs::File::create(p).map_err(|e| write_error(p, e))?));
        }
        let with_month = month.is_none();
        let label = self.label_column();
        let mut line = String::with_capacity(256);
        for (w, p) in writers.iter_mut().zip(&paths) {
            header(&mut line, p, with_month, &label);
            w.write_all(line.as_bytes()).map_err(|e| write_error(p, e))?;
        }
        self.for_each_row(&months, |r| {
            for (party, (w, p)) in writers.iter_mut().zip(&paths).enumerate() {
                self.format_row(&mut line, party, r, with_month);
                w.write_all(line.as_bytes()).map_err(|e| write_error(p, e))?;
            }
            Ok::<(), DataError>(())
        })?;
        for (w, p) in writers.iter_mut().zip(&paths) {
            w.flush().map_err(|e| write_error(p, e))?;
        }
        let links_path = dir.join("links.csv");
        let mut links =
            BufWriter::new(fs::File::create(&links_path).map_err(|e| write_error(&links_path, e))?);
        line.clear();
        line.push_str("supplier_id,customer_id\n");
        for (s, c) in self.link_pairs(&months) {
            line.push_str(&self.enterprises[s].id);
            line.push(',');
            line.push_str(&self.enterprises[c].id);
            line.push('\n');
        }
        links.write_all(line.as_bytes()).map_err(|e| write_error(&links_path, e))?;
        links.flush().map_err(|e| write_error(&links_path, e))?;
        Ok(paths)
    }

    fn check_month(&self, month: usize) -> Result<(), DataError> {
        if month >= self.config.n_months {
            return Err(DataError::InvalidParam {
                name: "month",
                reason: format!("{month} is not below n_months = {}", self.config.n_months),
            });
        }
        Ok(())
    }

    fn n_internal(&self) -> usize {
        BURN_IN + self.config.n_months + self.config.default_horizon_months
    }

    /// Calls `f` with the row of every enterprise alive at each of `months` (ascending),
    /// enterprise by enterprise (all months of enterprise 0 first).
    fn for_each_row<E>(
        &self,
        months: &[usize],
        mut f: impl FnMut(&Row) -> Result<(), E>,
    ) -> Result<(), E> {
        let (Some(&first), Some(&last)) = (months.first(), months.last()) else {
            return Ok(());
        };
        // Observation window: internal months of visible first-14 ..= last.
        let lo = first + BURN_IN + 1 - WINDOW;
        let hi = last + BURN_IN;
        let mut obs = Vec::with_capacity(hi - lo + 1);
        for (i, e) in self.enterprises.iter().enumerate() {
            if !months.iter().any(|&m| e.alive_at(m as i64)) {
                continue;
            }
            obs.clear();
            obs.extend((lo..=hi).map(|k| self.month_obs(i, k)));
            for &m in months {
                if e.alive_at(m as i64) {
                    f(&self.row(i, m, &obs, lo))?;
                }
            }
        }
        Ok(())
    }

    fn latent(&self, i: usize, k: usize) -> [f64; 3] {
        let v = self.latent[i * self.n_internal() + k];
        [f64::from(v[0]), f64::from(v[1]), f64::from(v[2])]
    }

    /// The observations of enterprise `i` in internal month `k` (`None` before founding).
    fn month_obs(&self, i: usize, k: usize) -> Option<MonthObs> {
        let e = &self.enterprises[i];
        let month = k as i64 - BURN_IN as i64;
        if month < e.founded_month {
            return None;
        }
        let mut rng = ChaCha8Rng::from_seed(self.obs_seed);
        rng.set_stream(i as u64);
        rng.set_word_pos(k as u128 * WORDS_PER_MONTH);
        let z: [f64; 20] = std::array::from_fn(|_| rng.sample(StandardNormal));
        let u: [f64; 2] = std::array::from_fn(|_| rng.random::<f64>());

        let [f, o, m] = self.latent(i, k);
        let m_prev = self.latent(i, k.saturating_sub(3))[2];
        let exposure = exposure(e, &self.cores, k);
        let sector = &SECTORS[e.sector_idx];
        let season = 0.08 * (std::f64::consts::TAU * (k as f64) / 12.0).sin();
        let s = e.scale;

        // Tax bureau: sales, invoices, tax, filing behaviour.
        let revenue = s * (-0.35 * o + season + 0.15 * z[0]).exp();
        let invoices = (revenue / sector.invoice_value * (0.15 * z[1]).exp()).round().max(1.0);
        let arrears = o + 0.5 * z[2] > 1.5;
        let tax_paid =
            revenue * sector.vat_rate * 0.3 * (0.1 * z[3]).exp() * if arrears { 0.35 } else { 1.0 };
        let d = o + 0.5 * z[4];
        let filing_delay =
            if d > 0.3 { (1.0 + 8.0 * (d - 0.3) * (0.3 * z[5]).exp()).round() } else { 0.0 };
        let counterparties =
            (e.counterparty_base * (-0.3 * o + 0.15 * z[6]).exp()).round().max(1.0);
        let top_share = (e.dependence * e.top_link_weight * (0.2 * z[7]).exp()
            + 0.05 * u[0]
            + 0.03 * o.max(0.0))
        .clamp(0.02, 1.0);

        // Bank: credit line use, repayments, deposits.
        let (utilisation, overdue) = match e.credit_limit {
            Some(_) => {
                let util = sigmoid(0.9 * f - 0.3 + 0.2 * z[8]);
                let q = f + 0.5 * z[9];
                let od = if q > 1.5 {
                    (5.0 + 30.0 * (q - 1.5) * (0.4 * z[10]).exp()).ceil().min(180.0)
                } else {
                    0.0
                };
                (util, od)
            }
            None => (f64::NAN, 0.0),
        };
        let deposit = s * 0.4 * (-0.35 * f - 0.15 * o + 0.12 * z[11]).exp();

        // Platform: only once the enterprise sells there.
        let on_platform = e.platform_from.is_some_and(|p| p <= month);
        let platform = if on_platform {
            let gmv = s * e.online_share * (-0.4 * m + season + 0.25 * z[12]).exp();
            let orders = (gmv / sector.order_value * (0.1 * z[13]).exp()).round();
            let spike = (m - m_prev).max(0.0);
            Some(PlatformObs {
                gmv,
                orders,
                return_rate: sigmoid(-3.0 + 0.45 * m + 1.0 * spike + 0.2 * z[14]),
                buyer_concentration: sigmoid(-1.2 + 1.5 * e.dependence + 0.35 * m + 0.4 * z[15]),
                logistics_delay: 1.5 * (0.25 * m + 0.3 * exposure + 0.3 * z[16]).exp(),
                active_days: (30.0 * sigmoid(2.2 - 0.6 * m + 0.3 * z[17])).round(),
                rating: (4.7 - 0.3 * m.max(0.0) - 0.1 * m + 0.1 * z[18]).clamp(1.0, 5.0),
                rating_hidden: u[1] < 0.08,
            })
        } else {
            None
        };
        Some(MonthObs {
            revenue,
            invoices,
            tax_paid,
            filing_delay,
            arrears,
            counterparties,
            top_share,
            utilisation,
            overdue,
            deposit,
            platform,
            f,
        })
    }

    /// The party rows of enterprise `i` at visible month `t`, from observations of internal
    /// months `lo ..` in `obs`.
    fn row(&self, i: usize, t: usize, obs: &[Option<MonthObs>], lo: usize) -> Row {
        let e = &self.enterprises[i];
        let k = t + BURN_IN;
        let at = |kk: usize| -> Option<&MonthObs> { obs.get(kk.checked_sub(lo)?)?.as_ref() };
        let window = |from: usize, to: usize| -> Vec<Option<&MonthObs>> {
            (k + 1 - from..=k + 1 - to).map(at).collect()
        };
        let nan = f64::NAN;
        let cur = at(k);

        // Bank.
        let mut bank = [nan; 8];
        if let Some(c) = cur {
            let last12 = window(12, 1);
            let overdue: Vec<f64> = last12.iter().flatten().map(|o| o.overdue).collect();
            bank[0] = round2(e.credit_limit.map_or(0.0, |l| l * c.utilisation));
            bank[1] = round4(c.utilisation);
            bank[2] = overdue.iter().copied().fold(0.0, f64::max);
            bank[3] = overdue.iter().filter(|&&d| d > 0.0).count() as f64;
            bank[4] = ratio_trend(&window(6, 1), |o| Some(o.deposit)).map_or(nan, round4);
            bank[5] = f64::from(e.guarantee_count);
            bank[6] = if e.guaranteed_by_core { 1.0 } else { 0.0 };
            bank[7] = f64::from(e.base_lenders + u32::from(c.f > 1.2));
        }

        // Tax bureau.
        let mut tax = [nan; 8];
        if let Some(c) = cur {
            tax[0] = round2(c.revenue);
            tax[1] = c.invoices;
            tax[2] = round2(c.tax_paid);
            tax[3] = c.filing_delay;
            let recent: Option<f64> = window(3, 1).iter().map(|o| o.map(|o| o.revenue)).sum();
            let year_ago: Option<f64> = window(15, 13).iter().map(|o| o.map(|o| o.revenue)).sum();
            tax[4] = match (recent, year_ago) {
                (Some(r), Some(y)) if y > 0.0 => round4(r / y - 1.0),
                _ => nan,
            };
            tax[5] = c.counterparties;
            tax[6] = round4(c.top_share);
            tax[7] = if c.arrears { 1.0 } else { 0.0 };
        }

        // Platform.
        let mut platform = [nan; 8];
        let mut sector = None;
        if let Some(p) = cur.and_then(|c| c.platform.as_ref()) {
            sector = Some(e.sector_idx);
            platform[0] = round2(p.gmv);
            platform[1] = p.orders;
            platform[2] = ratio_trend(&window(6, 1), |o| o.platform.as_ref().map(|p| p.orders))
                .map_or(nan, round4);
            platform[3] = round4(p.return_rate);
            platform[4] = round4(p.buyer_concentration);
            platform[5] = round2(p.logistics_delay);
            platform[6] = p.active_days;
            let recent_orders: f64 = window(3, 1)
                .iter()
                .flatten()
                .filter_map(|o| o.platform.as_ref().map(|p| p.orders))
                .sum();
            platform[7] = if recent_orders < 10.0 || p.rating_hidden {
                nan
            } else {
                (p.rating * 10.0).round() / 10.0
            };
        }

        let horizon = self.config.default_horizon_months as i64;
        let t64 = t as i64;
        let label = e.default_month.is_some_and(|d| d > t64 && d <= t64 + horizon);
        Row { enterprise: i, month: t, bank, tax, platform, sector, label }
    }

    /// One CSV line of `party` (0 bank, 1 tax, 2 platform) into `line`.
    fn format_row(&self, line: &mut String, party: usize, r: &Row, with_month: bool) {
        use std::fmt::Write as _;
        line.clear();
        line.push_str(&self.enterprises[r.enterprise].id);
        if with_month {
            let _ = write!(line, ",{}", r.month);
        }
        let (values, bools): (&[f64; 8], &[usize]) = match party {
            0 => (&r.bank, &[6]),
            1 => (&r.tax, &[7]),
            _ => (&r.platform, &[]),
        };
        for (c, v) in values.iter().enumerate() {
            line.push(',');
            if v.is_nan() {
                continue;
            }
            if bools.contains(&c) {
                line.push_str(if *v != 0.0 { "true" } else { "false" });
            } else {
                let _ = write!(line, "{v}");
            }
        }
        match party {
            0 => line.push_str(if r.label { ",1" } else { ",0" }),
            2 => {
                line.push(',');
                if let Some(s) = r.sector {
                    line.push_str(SECTORS[s].name);
                }
            }
            _ => {}
        }
        line.push('\n');
    }

    fn tables(&self, rows: &[Row], dir: &Path) -> PartyTables {
        let ids: Vec<String> =
            rows.iter().map(|r| self.enterprises[r.enterprise].id.clone()).collect();
        let n = rows.len();
        let matrix = |get: &dyn Fn(&Row) -> &[f64; 8]| {
            Array2::from_shape_fn((n, 8), |(r, c)| get(&rows[r])[c])
        };
        let numeric = |names: &[&str]| names.iter().map(|s| FeatureSpec::numeric(*s)).collect();

        let bank = Table {
            source: dir.join("bank.csv"),
            ids: ids.clone(),
            time: None,
            label: Some(rows.iter().map(|r| if r.label { 1.0 } else { 0.0 }).collect()),
            features: Features { specs: numeric(&BANK_COLUMNS), values: matrix(&|r| &r.bank) },
        };
        let tax = Table {
            source: dir.join("tax.csv"),
            ids: ids.clone(),
            time: None,
            label: None,
            features: Features { specs: numeric(&TAX_COLUMNS), values: matrix(&|r| &r.tax) },
        };
        // The sector levels present, sorted by name, as a loader would read them from CSV.
        let mut present: Vec<&str> =
            rows.iter().filter_map(|r| r.sector).map(|s| SECTORS[s].name).collect();
        present.sort_unstable();
        present.dedup();
        let sector_col: Array1<f64> = rows
            .iter()
            .map(|r| {
                r.sector
                    .and_then(|s| present.iter().position(|p| *p == SECTORS[s].name))
                    .map_or(f64::NAN, |p| p as f64)
            })
            .collect();
        let pvalues =
            Array2::from_shape_fn(
                (n, 9),
                |(r, c)| {
                    if c < 8 { rows[r].platform[c] } else { sector_col[r] }
                },
            );
        let mut pspecs: Vec<FeatureSpec> = numeric(&PLATFORM_COLUMNS);
        pspecs.push(FeatureSpec::categorical(
            "sector",
            present.iter().map(|s| s.to_string()).collect(),
        ));
        let platform = Table {
            source: dir.join("platform.csv"),
            ids,
            time: None,
            label: None,
            features: Features { specs: pspecs, values: pvalues },
        };
        PartyTables { bank, tax, platform }
    }
}

/// The check character of a unified social credit code from its first 17 characters
/// (GB 32100-2015, clause 5: weights `3^(i-1) mod 31`, check value `31 - (Σ c_i w_i mod 31)`,
/// with 31 written as `0`). `None` when `first17` is not 17 characters of [`USCC_CHARSET`].
pub fn uscc_check_char(first17: &str) -> Option<char> {
    let chars: Vec<char> = first17.chars().collect();
    if chars.len() != 17 {
        return None;
    }
    let mut sum = 0usize;
    let mut weight = 1usize;
    for c in chars {
        let v = USCC_CHARSET.find(c)?;
        sum += v * weight;
        weight = weight * 3 % 31;
    }
    let check = (31 - sum % 31) % 31;
    USCC_CHARSET.chars().nth(check)
}

/// True when `code` is 18 characters of [`USCC_CHARSET`] with a correct check character.
pub fn is_valid_uscc(code: &str) -> bool {
    let (Some(body), Some(last)) = (code.get(..17), code.get(17..)) else {
        return false;
    };
    last.chars().count() == 1 && uscc_check_char(body).is_some_and(|c| last.starts_with(c))
}

/// The check character of a 9-character organization code (GB 11714-1997) from its first 8
/// characters (digits and upper-case letters, `A` = 10): weights 3, 7, 9, 10, 5, 8, 4, 2,
/// check value `11 - (Σ c_i w_i mod 11)`, written `X` for 10 and `0` for 11.
pub fn org_code_check_char(first8: &str) -> Option<char> {
    const WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let chars: Vec<char> = first8.chars().collect();
    if chars.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in chars.iter().zip(WEIGHTS) {
        let v = match c {
            '0'..='9' | 'A'..='Z' => c.to_digit(36)?,
            _ => return None,
        };
        sum += v * w;
    }
    match 11 - sum % 11 {
        10 => Some('X'),
        11 => Some('0'),
        v => char::from_digit(v, 10),
    }
}

// ---------------------------------------------------------------------------------------
// Internals.

struct SectorDef {
    name: &'static str,
    share: f64,
    risk_o: f64,
    risk_m: f64,
    cycle: f64,
    platform: f64,
    vat_rate: f64,
    invoice_value: f64,
    order_value: f64,
}

const SECTORS: [SectorDef; 7] = [
    SectorDef {
        name: "manufacturing",
        share: 0.26,
        risk_o: 0.0,
        risk_m: 0.0,
        cycle: 0.8,
        platform: 0.70,
        vat_rate: 0.13,
        invoice_value: 40_000.0,
        order_value: 2_000.0,
    },
    SectorDef {
        name: "wholesale",
        share: 0.16,
        risk_o: 0.1,
        risk_m: 0.0,
        cycle: 0.6,
        platform: 0.85,
        vat_rate: 0.13,
        invoice_value: 25_000.0,
        order_value: 1_500.0,
    },
    SectorDef {
        name: "retail",
        share: 0.16,
        risk_o: 0.0,
        risk_m: 0.2,
        cycle: 0.5,
        platform: 0.95,
        vat_rate: 0.13,
        invoice_value: 3_000.0,
        order_value: 150.0,
    },
    SectorDef {
        name: "logistics",
        share: 0.10,
        risk_o: 0.1,
        risk_m: 0.0,
        cycle: 0.7,
        platform: 0.65,
        vat_rate: 0.09,
        invoice_value: 8_000.0,
        order_value: 800.0,
    },
    SectorDef {
        name: "construction",
        share: 0.10,
        risk_o: 0.3,
        risk_m: 0.0,
        cycle: 1.0,
        platform: 0.40,
        vat_rate: 0.09,
        invoice_value: 120_000.0,
        order_value: 5_000.0,
    },
    SectorDef {
        name: "services",
        share: 0.14,
        risk_o: -0.1,
        risk_m: 0.1,
        cycle: 0.4,
        platform: 0.80,
        vat_rate: 0.06,
        invoice_value: 6_000.0,
        order_value: 300.0,
    },
    SectorDef {
        name: "agriculture",
        share: 0.08,
        risk_o: 0.2,
        risk_m: 0.1,
        cycle: 0.6,
        platform: 0.60,
        vat_rate: 0.09,
        invoice_value: 10_000.0,
        order_value: 200.0,
    },
];

struct RegionDef {
    name: &'static str,
    /// Administrative division code (GB/T 2260) of a district of the city.
    code: &'static str,
    risk: f64,
}

const REGIONS: [RegionDef; 16] = [
    RegionDef { name: "beijing", code: "110105", risk: -0.10 },
    RegionDef { name: "shanghai", code: "310115", risk: -0.10 },
    RegionDef { name: "shenzhen", code: "440305", risk: -0.05 },
    RegionDef { name: "guangzhou", code: "440106", risk: -0.05 },
    RegionDef { name: "hangzhou", code: "330106", risk: -0.05 },
    RegionDef { name: "suzhou", code: "320505", risk: 0.0 },
    RegionDef { name: "chengdu", code: "510107", risk: 0.05 },
    RegionDef { name: "wuhan", code: "420106", risk: 0.05 },
    RegionDef { name: "xian", code: "610113", risk: 0.10 },
    RegionDef { name: "chongqing", code: "500103", risk: 0.05 },
    RegionDef { name: "tianjin", code: "120101", risk: 0.05 },
    RegionDef { name: "qingdao", code: "370202", risk: 0.0 },
    RegionDef { name: "xiamen", code: "350203", risk: 0.0 },
    RegionDef { name: "changsha", code: "430102", risk: 0.05 },
    RegionDef { name: "zhengzhou", code: "410105", risk: 0.10 },
    RegionDef { name: "shenyang", code: "210102", risk: 0.15 },
];

#[derive(Debug, Clone)]
struct PlatformObs {
    gmv: f64,
    orders: f64,
    return_rate: f64,
    buyer_concentration: f64,
    logistics_delay: f64,
    active_days: f64,
    rating: f64,
    rating_hidden: bool,
}

/// What the parties see of one enterprise in one month.
#[derive(Debug, Clone)]
struct MonthObs {
    revenue: f64,
    invoices: f64,
    tax_paid: f64,
    filing_delay: f64,
    arrears: bool,
    counterparties: f64,
    top_share: f64,
    utilisation: f64,
    overdue: f64,
    deposit: f64,
    platform: Option<PlatformObs>,
    /// Financial stress, for the bank's count of lenders (a stressed firm borrows around).
    f: f64,
}

#[derive(Debug, Clone)]
struct Row {
    enterprise: usize,
    month: usize,
    bank: [f64; 8],
    tax: [f64; 8],
    platform: [f64; 8],
    sector: Option<usize>,
    label: bool,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// `mean(last 3) / mean(previous 3) - 1` over a 6-month window (oldest first); `None` when a
/// month is missing or the base is not positive.
fn ratio_trend(
    window: &[Option<&MonthObs>],
    value: impl Fn(&MonthObs) -> Option<f64>,
) -> Option<f64> {
    let vals: Option<Vec<f64>> = window.iter().map(|o| o.and_then(&value)).collect();
    let vals = vals?;
    let (prev, last) = vals.split_at(vals.len() / 2);
    let (p, l): (f64, f64) = (prev.iter().sum(), last.iter().sum());
    (p > 0.0).then(|| l / p - 1.0)
}

/// Cumulative Zipf-like weights `1 / (k + 1)^s`, normalised.
fn zipf_cumulative(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cum: Vec<f64> = (0..n)
        .map(|k| {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            acc
        })
        .collect();
    for c in &mut cum {
        *c /= acc;
    }
    cum
}

fn pick(cumulative: &[f64], u: f64) -> usize {
    cumulative.partition_point(|&c| c < u).min(cumulative.len() - 1)
}

fn simulate_sector_cycles(rng: &mut ChaCha8Rng, n_internal: usize) -> Vec<Vec<f64>> {
    SECTORS
        .iter()
        .map(|_| {
            let mut c = 0.32 * normal(rng);
            (0..n_internal)
                .map(|_| {
                    c = 0.95 * c + 0.1 * normal(rng);
                    c
                })
                .collect()
        })
        .collect()
}

fn simulate_cores(
    rng: &mut ChaCha8Rng,
    n_cores: usize,
    cycles: &[Vec<f64>],
    used: &mut HashSet<String>,
) -> Vec<CoreEnterprise> {
    let sector_cum = sector_cumulative();
    (0..n_cores)
        .map(|_| {
            let s = pick(&sector_cum, rng.random());
            let region = rng.random_range(0..REGIONS.len());
            let id = draw_uscc(rng, '1', region, used);
            // A crisis builds pressure that feeds distress over the following months, so
            // distress rises over a few months, peaks and fades.
            let mut pressure = 0.0;
            let mut d = 0.3 * normal(rng);
            let distress = cycles[s]
                .iter()
                .map(|&c| {
                    if rng.random::<f64>() < 0.015 {
                        pressure += 0.6 + 0.6 * rng.sample::<f64, _>(Exp1);
                    }
                    pressure *= 0.85;
                    d = 0.8 * d + 0.15 * normal(rng) + 0.1 * c + 0.25 * pressure;
                    d
                })
                .collect();
            CoreEnterprise { id, sector: SECTORS[s].name, distress }
        })
        .collect()
}

fn sector_cumulative() -> Vec<f64> {
    let mut acc = 0.0;
    SECTORS
        .iter()
        .map(|s| {
            acc += s.share;
            acc
        })
        .collect()
}

/// A unique unified social credit code: `9` (industry and commerce administration), the
/// category, the region's division code, a random 8-digit organization code body with its
/// GB 11714 check character, and the GB 32100 check character.
fn draw_uscc(
    rng: &mut ChaCha8Rng,
    category: char,
    region: usize,
    used: &mut HashSet<String>,
) -> String {
    loop {
        let body: String = (0..8).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
        let Some(org_check) = org_code_check_char(&body) else { continue };
        let first17 = format!("9{category}{}{body}{org_check}", REGIONS[region].code);
        let Some(check) = uscc_check_char(&first17) else { continue };
        let code = format!("{first17}{check}");
        if used.insert(code.clone()) {
            return code;
        }
    }
}

fn draw_enterprise(
    rng: &mut ChaCha8Rng,
    config: &EcosystemConfig,
    popularity: &[f64],
    used: &mut HashSet<String>,
) -> Enterprise {
    let sector_idx = pick(&sector_cumulative(), rng.random());
    let sector = &SECTORS[sector_idx];
    let region_idx = rng.random_range(0..REGIONS.len());
    let u: f64 = rng.random();
    let size = if u < 0.55 {
        Size::Micro
    } else if u < 0.87 {
        Size::Small
    } else {
        Size::Medium
    };
    // Individual businesses (category 2) are micro.
    let category = if size == Size::Micro && rng.random::<f64>() < 0.2 { '2' } else { '1' };
    let id = draw_uscc(rng, category, region_idx, used);
    // New entrants are founded during the snapshot months and replace defaulted enterprises.
    let founded_month = if config.n_months > 1 && rng.random::<f64>() < ENTRANT_SHARE {
        rng.random_range(1..config.n_months as i64)
    } else {
        let months = (70f64.ln() + 0.9 * normal(rng)).exp().max(1.0);
        -(months.round() as i64)
    };
    let platform_from = (rng.random::<f64>() < sector.platform).then(|| {
        let lag = (rng.sample::<f64, _>(Exp1) * 12.0).round() as i64;
        founded_month + lag
    });
    let n_links = match rng.random::<f64>() {
        u if u < 0.5 => 1,
        u if u < 0.85 => 2,
        _ => 3,
    };
    let mut links: Vec<SupplyLink> = Vec::with_capacity(n_links);
    while links.len() < n_links {
        let core = pick(popularity, rng.random());
        if links.iter().any(|l| l.core == core) {
            continue;
        }
        let role = if rng.random::<f64>() < 0.7 { LinkRole::Supplier } else { LinkRole::Customer };
        links.push(SupplyLink { core, role, weight: rng.sample::<f64, _>(Exp1) + 0.05 });
    }
    let total: f64 = links.iter().map(|l| l.weight).sum();
    for l in &mut links {
        l.weight /= total;
    }
    let top_link_weight = links.iter().map(|l| l.weight).fold(0.0, f64::max);
    let dependence = rng.random_range(0.1..0.8);
    let scale = size.revenue_median() * (0.5 * normal(rng)).exp();
    let credit_limit =
        (rng.random::<f64>() < 0.85).then(|| scale * 2.5 * (0.4 * normal(rng)).exp());
    let guaranteed_by_core =
        links.iter().any(|l| l.role == LinkRole::Supplier) && rng.random::<f64>() < 0.2;
    let size_rank = match size {
        Size::Micro => 0.0,
        Size::Small => 1.0,
        Size::Medium => 2.0,
    };
    let guarantee_count = poisson(rng, 0.3 + 0.4 * size_rank);
    let base_lenders = 1 + poisson(rng, 0.4 + 0.6 * size_rank);
    let online_share = rng.random_range(0.05..0.6);
    let counterparty_base = (scale / 20_000.0).sqrt() * (1.0 - 0.5 * dependence) * 3.0;
    Enterprise {
        id,
        sector: sector.name,
        region: REGIONS[region_idx].name,
        size,
        founded_month,
        platform_from,
        links,
        tier: 1,
        customers: Vec::new(),
        customer_weights: Vec::new(),
        default_month: None,
        sector_idx,
        region_idx,
        scale,
        dependence,
        top_link_weight,
        credit_limit,
        guarantee_count,
        guaranteed_by_core,
        base_lenders,
        online_share,
        counterparty_base,
    }
}

/// Knuth's multiplication method; fine for the small means used here.
fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

/// Core-distress exposure of an SME in internal month `k`.
fn exposure(e: &Enterprise, cores: &[CoreEnterprise], k: usize) -> f64 {
    e.dependence
        * e.links
            .iter()
            .map(|l| {
                let d = (cores[l.core].distress[k] - 0.5).max(0.0);
                let hit = if l.role == LinkRole::Supplier { 1.0 } else { 0.5 };
                l.weight * d * hit
            })
            .sum::<f64>()
}

/// The SME-to-SME supply network, by enterprise index (drawn before the enterprises, so an
/// enterprise replaced during the burn-in keeps its place in the network).
struct Network {
    tier: Vec<u8>,
    customers: Vec<Vec<usize>>,
    weights: Vec<Vec<f64>>,
}

/// Draws every SME's tier, then for each SME of tier `k >= 2` one or two customers among the
/// SMEs of tier `k - 1` (Zipf-like popularity, so some SMEs gather many suppliers) with the
/// share of its SME sales going to each. An SME whose tier above is empty is tier 1.
fn draw_network(rng: &mut ChaCha8Rng, n: usize) -> Network {
    let mut tier: Vec<u8> =
        (0..n).map(|_| pick(&TIER_CUMULATIVE, rng.random()) as u8 + 1).collect();
    let mut customers = vec![Vec::new(); n];
    let mut weights = vec![Vec::new(); n];
    for k in 2..=MAX_TIER {
        let above: Vec<usize> = (0..n).filter(|&i| tier[i] == k - 1).collect();
        let popularity = zipf_cumulative(above.len(), SME_POPULARITY);
        for i in 0..n {
            if tier[i] != k {
                continue;
            }
            if above.is_empty() {
                tier[i] = 1;
                continue;
            }
            let n_customers = if above.len() > 1 && rng.random::<f64>() < 0.4 { 2 } else { 1 };
            let mut mine: Vec<usize> = Vec::with_capacity(n_customers);
            let mut w: Vec<f64> = Vec::with_capacity(n_customers);
            while mine.len() < n_customers {
                let c = above[pick(&popularity, rng.random())];
                if mine.contains(&c) {
                    continue;
                }
                mine.push(c);
                w.push(rng.sample::<f64, _>(Exp1) + 0.05);
            }
            let total: f64 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= total);
            customers[i] = mine;
            weights[i] = w;
        }
    }
    Network { tier, customers, weights }
}

/// The pressure of SME `i`'s customers on it per internal month `k`, before its dependence
/// on them: the weighted sum over its customers `j` of `TIER_DECAY` times the distress `j`
/// passed on in month `k - 1`, and of the push of `j`'s default if `j` defaulted before `k`.
/// Every customer is in the tier above, so `slots` and `passed` already hold it.
fn customer_pressure(
    network: &Network,
    i: usize,
    slots: &[Option<Enterprise>],
    passed: &[f32],
    n_internal: usize,
) -> Vec<f64> {
    let mut pressure = vec![0.0; n_internal];
    for (&j, &w) in network.customers[i].iter().zip(&network.weights[i]) {
        let default_month = slots.get(j).and_then(|c| c.as_ref()).and_then(|c| c.default_month);
        let path = passed.get(j * n_internal..(j + 1) * n_internal).unwrap_or_default();
        for (k, p) in pressure.iter_mut().enumerate() {
            let month = k as i64 - BURN_IN as i64;
            let distress =
                k.checked_sub(1).and_then(|b| path.get(b)).map_or(0.0, |&v| f64::from(v));
            let lost = match default_month {
                Some(d) if month > d => {
                    CUSTOMER_DEFAULT_SHOCK * CUSTOMER_DEFAULT_DECAY.powi((month - d - 1) as i32)
                }
                _ => 0.0,
            };
            *p += w * (TIER_DECAY * distress + lost);
        }
    }
    pressure
}

/// Simulates the latent stress paths of one SME into `latent` (one entry per internal month),
/// the distress it passes to its suppliers into `passed`, and draws its default month.
/// `pressure` is its customers' pressure on it ([`customer_pressure`]).
fn simulate_enterprise(
    rng: &mut ChaCha8Rng,
    e: &mut Enterprise,
    cores: &[CoreEnterprise],
    cycles: &[Vec<f64>],
    pressure: &[f64],
    latent: &mut [[f32; 3]],
    passed: &mut [f32],
) {
    let sector = &SECTORS[e.sector_idx];
    let common = 0.35 * normal(rng);
    let base_f = common + 0.9 * normal(rng) + e.size.risk() + 0.08 * f64::from(e.guarantee_count);
    let base_o = common + 0.9 * normal(rng) + sector.risk_o + REGIONS[e.region_idx].risk;
    let base_m = common + 0.9 * normal(rng) + sector.risk_m;
    // Start the AR(1) parts from their stationary distributions.
    let stationary = AR_INNOVATION / (1.0 - AR_PHI * AR_PHI).sqrt();
    let mut f = stationary * normal(rng);
    let mut o = stationary * normal(rng);
    let mut m = stationary * normal(rng);
    let mut default_month = None;
    for k in 0..latent.len().min(passed.len()) {
        f = AR_PHI * f + AR_INNOVATION * normal(rng);
        o = AR_PHI * o + AR_INNOVATION * normal(rng);
        m = AR_PHI * m + AR_INNOVATION * normal(rng);
        let month = k as i64 - BURN_IN as i64;
        let age = e.age_years(month).max(0.0);
        let young = 0.6 * (-age / 1.5).exp();
        let x = exposure(e, cores, k);
        let chain = e.dependence * pressure.get(k).copied().unwrap_or(0.0);
        let c = cycles[e.sector_idx][k];
        let big_f = base_f + f + young + 0.6 * x;
        let big_o = base_o + o + sector.cycle * c + 1.0 * x + chain;
        let big_m = base_m + m + 0.5 * sector.cycle * c + 0.3 * x + 0.5 * young;
        latent[k] = [big_f as f32, big_o as f32, big_m as f32];
        let u: f64 = rng.random();
        if default_month.is_none() && month > e.founded_month {
            let back = latent[k.saturating_sub(3)];
            let d_o = (big_o - f64::from(back[1])).max(0.0);
            let d_m = (big_m - f64::from(back[2])).max(0.0);
            let score = HAZARD_INTERCEPT
                + HAZARD_SLOPE * (big_f + big_o + big_m)
                + HAZARD_FALLING_SALES * (big_f - 0.3).max(0.0) * d_o
                + HAZARD_SPIKE_DISTRESS * d_m * (0.3 + x)
                + 0.3 * x;
            if u < sigmoid(score) {
                default_month = Some(month);
            }
        }
        // What it passes to its suppliers: its core exposure, its own customers' pressure and
        // operating stress beyond distress, while it exists and has not defaulted.
        let alive = month >= e.founded_month && default_month.is_none();
        passed[k] =
            if alive { (x + chain + (big_o - CUSTOMER_DISTRESS_O).max(0.0)) as f32 } else { 0.0 };
    }
    e.default_month = default_month;
}

/// The header line of the CSV file at `path` (named after its party).
fn header(line: &mut String, path: &Path, with_month: bool, label: &str) {
    line.clear();
    line.push_str("id");
    if with_month {
        line.push_str(",month");
    }
    let stem = crate::table::file_stem(path);
    let columns: &[&str] = match stem.as_str() {
        "bank" => &BANK_COLUMNS,
        "tax" => &TAX_COLUMNS,
        _ => &PLATFORM_COLUMNS,
    };
    for c in columns {
        line.push(',');
        line.push_str(c);
    }
    match stem.as_str() {
        "bank" => {
            line.push(',');
            line.push_str(label);
        }
        "tax" => {}
        _ => line.push_str(",sector"),
    }
    line.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Ecosystem {
        let cfg = EcosystemConfig {
            n_enterprises: 600,
            n_months: 8,
            n_cores: 25,
            seed: 11,
            ..Default::default()
        };
        generate(&cfg).unwrap()
    }

    #[test]
    fn uscc_check_character_of_known_codes() {
        // The example code of GB 32100-2015 and two registered enterprises' codes.
        for code in ["91350100M000100Y43", "91440300708461136T", "91110108551385082Q"] {
            assert!(is_valid_uscc(code), "{code}");
            assert_eq!(uscc_check_char(&code[..17]), code.chars().last());
        }
        assert!(!is_valid_uscc("91350100M000100Y44"));
        assert!(!is_valid_uscc("91350100M000100Y4"));
        assert!(!is_valid_uscc("91350100M000100I43"), "I is not in the charset");
        assert_eq!(uscc_check_char("9135010"), None);
        // The organization code inside: M000100Y + check 4 (GB 11714).
        assert_eq!(org_code_check_char("M000100Y"), Some('4'));
        assert_eq!(org_code_check_char("70846113"), Some('6'));
        assert_eq!(org_code_check_char("5513850"), None);
    }

    #[test]
    fn generated_ids_are_valid_unique_and_well_formed() {
        let eco = small();
        let mut seen = HashSet::new();
        for e in eco.enterprises() {
            assert!(is_valid_uscc(&e.id), "{}", e.id);
            assert!(e.id.starts_with("91") || e.id.starts_with("92"));
            let region = REGIONS.iter().find(|r| r.name == e.region).unwrap();
            assert_eq!(&e.id[2..8], region.code);
            assert_eq!(org_code_check_char(&e.id[8..16]), e.id.chars().nth(16));
            assert!(seen.insert(e.id.clone()));
            assert!((1..=3).contains(&e.links.len()));
            let w: f64 = e.links.iter().map(|l| l.weight).sum();
            assert!((w - 1.0).abs() < 1e-9);
        }
        for c in eco.cores() {
            assert!(is_valid_uscc(&c.id) && seen.insert(c.id.clone()));
        }
    }

    #[test]
    fn generation_is_deterministic_and_seeded() {
        let a = small().snapshot(3).unwrap();
        let b = small().snapshot(3).unwrap();
        assert_eq!(a.bank.ids, b.bank.ids);
        let same = |x: &Features, y: &Features| {
            x.values.iter().zip(y.values.iter()).all(|(p, q)| p == q || (p.is_nan() && q.is_nan()))
        };
        assert!(same(&a.platform.features, &b.platform.features));
        assert_eq!(a.bank.label, b.bank.label);
        let cfg = EcosystemConfig {
            n_enterprises: 600,
            n_months: 8,
            n_cores: 25,
            seed: 12,
            ..Default::default()
        };
        let c = generate(&cfg).unwrap().snapshot(3).unwrap();
        assert_ne!(a.bank.ids, c.bank.ids);
    }

    #[test]
    fn snapshots_follow_the_population_and_the_label_horizon() {
        let eco = small();
        let h = eco.config().default_horizon_months as i64;
        for month in [0usize, 7] {
            let s = eco.snapshot(month).unwrap();
            let m = month as i64;
            let alive: Vec<&Enterprise> =
                eco.enterprises().iter().filter(|e| e.alive_at(m)).collect();
            assert_eq!(s.bank.n_rows(), alive.len());
            assert_eq!(s.tax.ids, s.bank.ids);
            assert_eq!(s.platform.ids, s.bank.ids);
            let label = s.bank.label.as_ref().unwrap();
            for (e, y) in alive.iter().zip(label.iter()) {
                let expected = e.default_month.is_some_and(|d| d > m && d <= m + h);
                assert_eq!(*y == 1.0, expected);
            }
            assert!(s.tax.label.is_none() && s.platform.label.is_none());
        }
        // Everybody alive at month 0 survived the burn-in.
        assert!(eco.enterprises().iter().all(|e| e.default_month.is_none_or(|d| d > 0)));
        assert!(matches!(eco.snapshot(8), Err(DataError::InvalidParam { name: "month", .. })));
        assert!(generate(&EcosystemConfig { n_months: 0, ..Default::default() }).is_err());
    }

    #[test]
    fn tables_have_the_documented_columns_missingness_and_point_masses() {
        let eco = small();
        let s = eco.snapshot(7).unwrap();
        assert_eq!(s.bank.features.names(), BANK_COLUMNS.to_vec());
        assert_eq!(s.tax.features.names(), TAX_COLUMNS.to_vec());
        let mut platform_names = PLATFORM_COLUMNS.to_vec();
        platform_names.push("sector");
        assert_eq!(s.platform.features.names(), platform_names);
        let n = s.bank.n_rows() as f64;
        let share = |t: &Table, c: usize, pred: &dyn Fn(f64) -> bool| {
            t.features.values.column(c).iter().filter(|v| pred(**v)).count() as f64 / n
        };
        // Overdue days: a point mass at zero, never missing.
        assert!(share(&s.bank, 2, &|v| v == 0.0) > 0.5);
        assert_eq!(share(&s.bank, 2, &|v| v.is_nan()), 0.0);
        // Utilisation missing without a credit line; GMV missing off the platform.
        let util_missing = share(&s.bank, 1, &|v| v.is_nan());
        assert!((0.05..0.3).contains(&util_missing), "{util_missing}");
        let gmv_missing = share(&s.platform, 0, &|v| v.is_nan());
        assert!((0.15..0.6).contains(&gmv_missing), "{gmv_missing}");
        let rating_missing = share(&s.platform, 7, &|v| v.is_nan());
        assert!(rating_missing > gmv_missing);
        // Young enterprises have no year-on-year growth.
        assert!(share(&s.tax, 4, &|v| v.is_nan()) > 0.0);
        // Booleans are 0/1; utilisation within (0, 1); sector levels sorted.
        assert!(s.bank.features.values.column(6).iter().all(|&v| v == 0.0 || v == 1.0));
        assert!(
            s.bank
                .features
                .values
                .column(1)
                .iter()
                .all(|&v| v.is_nan() || (0.0..=1.0).contains(&v))
        );
        match &s.platform.features.specs[8].kind {
            fedcredit_models::FeatureKind::Categorical { levels } => {
                assert!(levels.windows(2).all(|w| w[0] < w[1]) && levels.len() == SECTORS.len());
            }
            other => panic!("sector is {other:?}"),
        }
        // No infinities anywhere.
        for t in [&s.bank, &s.tax, &s.platform] {
            assert!(t.features.values.iter().all(|v| !v.is_infinite()));
        }
    }

    #[test]
    fn label_follows_the_latent_risk_and_core_distress_exists() {
        let cfg = EcosystemConfig {
            n_enterprises: 4000,
            n_months: 12,
            n_cores: 60,
            seed: 5,
            ..Default::default()
        };
        let eco = generate(&cfg).unwrap();
        let s = eco.snapshot(6).unwrap();
        let label = s.bank.label.as_ref().unwrap();
        let rate = label.mean().unwrap();
        assert!((0.03..0.12).contains(&rate), "default rate {rate}");
        // Mean latent risk of defaulters is clearly above the survivors'.
        let alive: Vec<usize> =
            (0..eco.enterprises().len()).filter(|&i| eco.enterprises()[i].alive_at(6)).collect();
        let risk = |i: usize| eco.latent_risk(i, 6).unwrap().iter().sum::<f64>();
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for (r, &i) in alive.iter().enumerate() {
            if label[r] == 1.0 { pos.push(risk(i)) } else { neg.push(risk(i)) }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&pos) > mean(&neg) + 1.0, "{} vs {}", mean(&pos), mean(&neg));
        // Some core goes through a crisis.
        let peak = (0..eco.cores().len())
            .filter_map(|c| (0..12).filter_map(|m| eco.core_distress(c, m)).reduce(f64::max))
            .fold(f64::MIN, f64::max);
        assert!(peak > 1.0, "{peak}");
        assert!(eco.sector_cycle("retail", 0).is_some() && eco.sector_cycle("mining", 0).is_none());
    }

    fn network_world() -> Ecosystem {
        let cfg = EcosystemConfig {
            n_enterprises: 4000,
            n_months: 12,
            n_cores: 60,
            seed: 9,
            ..Default::default()
        };
        generate(&cfg).unwrap()
    }

    #[test]
    fn supplier_links_form_a_dag_by_tiers() {
        let eco = small();
        let es = eco.enterprises();
        let mut per_tier = [0usize; 4];
        for (i, e) in es.iter().enumerate() {
            assert!((1..=MAX_TIER).contains(&e.tier), "tier {}", e.tier);
            per_tier[usize::from(e.tier - 1)] += 1;
            if e.tier == 1 {
                assert!(e.customers.is_empty() && e.customer_weights.is_empty());
                continue;
            }
            assert!((1..=2).contains(&e.customers.len()));
            assert_eq!(e.customer_weights.len(), e.customers.len());
            assert!((e.customer_weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let mut distinct = e.customers.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), e.customers.len());
            for &c in &e.customers {
                assert_ne!(c, i, "an SME supplies itself");
                assert_eq!(es[c].tier + 1, e.tier, "tier {} supplies tier {}", e.tier, es[c].tier);
            }
        }
        assert!(per_tier.iter().all(|&n| n > 0), "{per_tier:?}");
        assert!(per_tier[0] > per_tier[1] && per_tier[1] > per_tier[3], "{per_tier:?}");
        // Deterministic for a seed.
        let again = small();
        assert!(es.iter().zip(again.enterprises()).all(|(a, b)| a.customers == b.customers));
    }

    #[test]
    fn supplier_links_name_only_alive_enterprises() {
        let eco = small();
        let es = eco.enterprises();
        let by_id: std::collections::HashMap<&str, &Enterprise> =
            es.iter().map(|e| (e.id.as_str(), e)).collect();
        for month in [0usize, 7] {
            let links = eco.supplier_links(month);
            assert!(!links.is_empty());
            let m = month as i64;
            for (s, c) in &links {
                let (s, c) = (by_id[s.as_str()], by_id[c.as_str()]);
                assert!(s.alive_at(m) && c.alive_at(m));
                assert!(s.customers.iter().any(|&j| es[j].id == c.id));
            }
            let expected: usize = es
                .iter()
                .filter(|e| e.alive_at(m))
                .map(|e| e.customers.iter().filter(|&&j| es[j].alive_at(m)).count())
                .sum();
            assert_eq!(links.len(), expected);
        }
        assert!(eco.supplier_links(8).is_empty());
    }

    /// A customer's default pushes its suppliers' operating stress up in the following months:
    /// the 3-month change of O after a customer's default is far above the same change for
    /// suppliers whose customers did not default.
    #[test]
    fn a_customer_default_raises_its_suppliers_operating_stress() {
        let eco = network_world();
        let es = eco.enterprises();
        let o = |i: usize, m: i64| eco.latent_risk(i, m).unwrap()[1];
        let last = eco.config().n_months as i64 - 1;
        let (mut hit, mut calm) = (Vec::new(), Vec::new());
        for (i, e) in es.iter().enumerate().filter(|(_, e)| e.tier > 1) {
            let defaults: Vec<i64> =
                e.customers.iter().filter_map(|&c| es[c].default_month).collect();
            for t in (3 - BURN_IN as i64)..=last {
                if !e.alive_at(t) || !e.alive_at(t - 3) {
                    continue;
                }
                let change = o(i, t) - o(i, t - 3);
                if defaults.iter().any(|&d| d == t - 2) {
                    hit.push(change);
                } else if defaults.iter().all(|&d| d >= t || d < t - 30) {
                    calm.push(change);
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(hit.len() > 50, "{} events", hit.len());
        let (h, c) = (mean(&hit), mean(&calm));
        assert!(h > c + 0.2, "after a customer's default {h:.3}, otherwise {c:.3}");
    }

    /// A distressed customer's stress reaches its suppliers a month later: when a customer
    /// slides into distress (its operating stress rose by more than 0.5 over three months and
    /// is above 1.5), its suppliers' operating stress rises over the same months shifted by
    /// one, more than that of suppliers whose customers stayed calm. The links are drawn
    /// independently of the SMEs' sectors, regions and cores, so only the network connects
    /// them; changes remove each supplier's static baseline.
    #[test]
    fn customer_distress_propagates_to_suppliers() {
        let cfg = EcosystemConfig {
            n_enterprises: 12_000,
            n_months: 12,
            n_cores: 100,
            seed: 9,
            ..Default::default()
        };
        let eco = generate(&cfg).unwrap();
        let es = eco.enterprises();
        let o = |i: usize, m: i64| eco.latent_risk(i, m).unwrap()[1];
        let last = eco.config().n_months as i64 - 1;
        let (mut hit, mut calm) = (Vec::new(), Vec::new());
        for (i, e) in es.iter().enumerate().filter(|(_, e)| e.tier > 1) {
            for t in (4 - BURN_IN as i64)..=last {
                let alive = |j: usize| es[j].alive_at(t - 1) && es[j].alive_at(t - 4);
                if !e.alive_at(t) || !e.alive_at(t - 3) || !e.customers.iter().all(|&c| alive(c)) {
                    continue;
                }
                let change = o(i, t) - o(i, t - 3);
                let rise = |c: &usize| o(*c, t - 1) - o(*c, t - 4);
                if e.customers.iter().any(|c| rise(c) > 0.5 && o(*c, t - 1) > 1.5) {
                    hit.push(change);
                } else if e.customers.iter().all(|c| rise(c).abs() < 0.2) {
                    calm.push(change);
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(hit.len() > 300, "{} events", hit.len());
        let (h, c) = (mean(&hit), mean(&calm));
        // About 0.06 apart; the standard error of the difference is about 0.014.
        assert!(h > c + 0.03, "suppliers of customers sliding into distress {h:.3}, others {c:.3}");
    }
}
