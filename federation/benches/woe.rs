//! `cargo bench -p fedcredit-federation --bench woe [-- ROWS FEATURES]`: the federated WOE/IV
//! stage (FATE-style hetero binning, Liu et al., JMLR 2021, with exponential ElGamal, ElGamal
//! 1985) between a label holder and one feature holder, in one process on every core; the
//! same run as `fedcredit bench woe`, without linking the CLI. Prints JSON with `seconds`.

use std::time::Instant;

use fedcredit_federation::JobId;
use fedcredit_federation::vertical::woe::local;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rows = args.first().copied().unwrap_or(100_000);
    let features = args.get(1).copied().unwrap_or(300);
    let (spec, parties) = match local::bench_job(rows, features, 42) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("bench tables: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    match local::run(&JobId("bench-woe".into()), &spec, parties, 42) {
        Ok(run) => {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{{\"rows\": {rows}, \"features\": {features}, \"seconds\": {seconds:.3}, \"payload_bytes\": {}, \"selected\": {}, \"threads\": {}}}",
                run.payload_bytes,
                run.report.n_selected(),
                std::thread::available_parallelism().map_or(1, usize::from)
            );
        }
        Err(e) => {
            eprintln!("WOE/IV stage: {e}");
            std::process::exit(1);
        }
    }
}
