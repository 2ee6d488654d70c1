//! `mcdnn-dst [FIRST [COUNT]]`: runs seeds FIRST..FIRST+COUNT (default 0, 20) and prints each
//! seed's summary, the failures with their reproduction command, and seeds per second.

use std::process::ExitCode;
use std::time::Instant;

use mcdnn_dst::{SimConfig, explain, run_seed, summary};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse()
                .map_err(|_| format!("usage: mcdnn-dst [FIRST [COUNT]]; {a:?} is not a number"))
        })
    };
    let (first, count) = match (parse(0, 0), parse(1, 20)) {
        (Ok(f), Ok(c)) => (f, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = SimConfig::default();
    let started = Instant::now();
    let mut failed = 0;
    for seed in first..first + count {
        let r = run_seed(seed, &config);
        println!("{}", summary(&r));
        if !r.ok() {
            failed += 1;
            eprintln!("{}", explain(&r));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds in {secs:.1}s: {:.2} seeds/s, {failed} failed",
        count as f64 / secs
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
