//! The benchmark with tiny counts, so it cannot rot: every scenario must run end to end and
//! give at least one figure above zero next to a bound above zero. Nothing here depends on how
//! fast the machine is.

use std::time::Duration;

use northstar_tests::bench::storage::Backend;
use northstar_tests::bench::{self, Scenario, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_is_measured_against_a_bound() {
    let settings = Settings::smoke(env!("CARGO_BIN_EXE_bench").into());
    let report = tokio::time::timeout(Duration::from_secs(120), bench::run(&settings))
        .await
        .expect("the smoke run should finish within two minutes")
        .expect("the smoke run should succeed");

    for scenario in Scenario::ALL {
        let rows: Vec<_> = report.rows_of(scenario).collect();
        assert!(!rows.is_empty(), "{} produced no figure", scenario.name());
        for row in &rows {
            assert_eq!(row.samples.len(), settings.runs, "{}", row.figure);
            assert!(
                row.samples.iter().all(|s| s.is_finite() && *s >= 0.0),
                "{}: {:?}",
                row.figure,
                row.samples
            );
        }
        assert!(
            rows.iter()
                .any(|r| r.median() > 0.0 && r.bound.as_ref().is_some_and(|b| b.median() > 0.0)),
            "{} has no figure above zero with a bound above zero: {rows:#?}",
            scenario.name()
        );
    }

    let table = report.table();
    assert!(table.contains(&report.machine.cpu_model), "{table}");
    assert!(
        table.contains("| scenario | figure | median | spread |"),
        "{table}"
    );
    for scenario in Scenario::ALL {
        assert!(
            table.contains(&format!("| {} |", scenario.name())),
            "{table}"
        );
    }
    let json = report.to_json();
    assert_eq!(
        json["rows"].as_array().map(Vec::len),
        Some(report.rows.len())
    );
}

/// With a PostgreSQL server (`NORTHSTAR_TEST_POSTGRES`), ingest and catch-up run on both
/// backends in one run, each figure named by its backend and next to its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_catch_up_run_on_each_backend() {
    let Some(server) = northstar_tests::postgres::server_from_env() else {
        eprintln!(
            "skipped: set {} to run the benchmark's PostgreSQL smoke run",
            northstar_tests::postgres::SERVER_ENV
        );
        return;
    };
    let mut settings = Settings::smoke(env!("CARGO_BIN_EXE_bench").into());
    settings.only = vec![Scenario::Ingest, Scenario::Catchup];
    settings.storage = vec![Backend::Sqlite, Backend::Postgres];
    settings.postgres = Some(server);
    let report = tokio::time::timeout(Duration::from_secs(120), bench::run(&settings))
        .await
        .expect("the smoke run should finish within two minutes")
        .expect("the smoke run should succeed");
    for scenario in [Scenario::Ingest, Scenario::Catchup] {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let suffix = format!(", {}", backend.name());
            let rows: Vec<_> = report
                .rows_of(scenario)
                .filter(|r| r.figure.ends_with(&suffix))
                .collect();
            assert!(
                rows.iter().any(|r| r.median() > 0.0
                    && r.bound.as_ref().is_some_and(|b| b.median() > 0.0)),
                "{} on {}: {rows:#?}",
                scenario.name(),
                backend.name()
            );
        }
    }
    assert!(
        report.notes.iter().any(|n| n.contains("× sqlite's rate")),
        "{:?}",
        report.notes
    );
    assert!(report.table().contains("PostgreSQL"), "{}", report.table());
}
