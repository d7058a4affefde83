// Scratch timing (removed before hand-off).
fn main() {
    let p = std::env::args().nth(1).unwrap();
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        let t = fedcredit_datasets::load_table(&fedcredit_datasets::TableSpec::new(&p, "id").with_label("y")).unwrap();
        eprintln!("{} rows {:?}", t.n_rows(), t0.elapsed());
    }
    use polars::prelude::*;
    let t0 = std::time::Instant::now();
    let nulls = NullValues::AllColumns(vec!["".into(), "NA".into()]);
    let df = CsvReadOptions::default().with_infer_schema_length(None).with_parse_options(CsvParseOptions::default().with_null_values(Some(nulls)))
        .try_into_reader_with_file_path(Some("/tmp/calib_big/all/platform.csv".into())).unwrap().finish().unwrap();
    eprintln!("polars only {} {:?}", df.height(), t0.elapsed());
    let t0 = std::time::Instant::now();
    let df = CsvReadOptions::default().with_infer_schema_length(Some(10000))
        .try_into_reader_with_file_path(Some("/tmp/calib_big/all/platform.csv".into())).unwrap().finish().unwrap();
    eprintln!("polars infer 10000 {} {:?}", df.height(), t0.elapsed());
    let t0 = std::time::Instant::now();
    let t = fedcredit_datasets::load_table(&fedcredit_datasets::TableSpec::new("/tmp/calib_big/all/platform.csv", "id").with_time("month")).unwrap();
    eprintln!("platform all {} rows {:?}", t.n_rows(), t0.elapsed());
}
#[allow(dead_code)]
fn polars_only() {}
