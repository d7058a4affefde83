// Scratch calibration driver (removed before hand-off).
use fedcredit_datasets::synthetic::{EcosystemConfig, generate};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args[1].parse().unwrap();
    let seed: u64 = args[2].parse().unwrap();
    let month: usize = args[3].parse().unwrap();
    let dir = std::path::PathBuf::from(&args[4]);
    let cfg = EcosystemConfig { n_enterprises: n, seed, ..Default::default() };
    let t0 = Instant::now();
    let eco = generate(&cfg).unwrap();
    eprintln!("generate {:?}", t0.elapsed());
    let t0 = Instant::now();
    let s = eco.snapshot(month).unwrap();
    eprintln!("snapshot {:?} rows {}", t0.elapsed(), s.bank.n_rows());
    let y = s.bank.label.as_ref().unwrap();
    eprintln!("default rate {:.4}", y.mean().unwrap());
    {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join("oracle.csv")).ok();
        std::fs::create_dir_all(&dir).unwrap();
        f = f.or_else(|| std::fs::File::create(dir.join("oracle.csv")).ok());
        let mut f = f.unwrap();
        writeln!(f, "id,F,O,M,F3,O3,M3,FUT").unwrap();
        let m = month as i64;
        for (i, e) in eco.enterprises().iter().enumerate() {
            if !e.alive_at(m) {
                continue;
            }
            let a = eco.latent_risk(i, m).unwrap();
            let b = eco.latent_risk(i, m - 3).unwrap();
            let fut: f64 = (1..=12)
                .map(|h| {
                    let c = eco.latent_risk(i, m + h).unwrap();
                    c[0] + c[1] + c[2]
                })
                .fold(f64::MIN, f64::max);
            writeln!(f, "{},{},{},{},{},{},{},{}", e.id, a[0], a[1], a[2], b[0], b[1], b[2], fut)
                .unwrap();
        }
    }
    let t0 = Instant::now();
    eco.write_csv(&dir, Some(month)).unwrap();
    eprintln!("write month {:?}", t0.elapsed());
    if args.len() > 5 {
        let t0 = Instant::now();
        eco.write_csv(&dir.join("all"), None).unwrap();
        eprintln!("write all {:?}", t0.elapsed());
    }
}

#[allow(dead_code)]
fn _x() {}
