//! `mcdnn-node bench api`: what the local API adds to a request. The same images go through the
//! real serving loop (one variant, fixed by an assignment) three ways, in alternating blocks of
//! one run: handed to the intake in-process, as raw-pixel HTTP calls over loopback TCP, and
//! over the Unix socket (one keep-alive connection each, as a camera app would hold). Prints
//! each path's median time per call and the HTTP/in-process ratios.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use scheduler::catalog::Catalog;
use serde::Serialize;
use wire::manifest::Manifest;
use wire::msg::{AppAssignment, Assignment, MixEntry, PlaceTag};

use crate::agent::serve::{Results, ServeConfig, ServeHandles, Server};
use crate::api::{self, Api, ApiLimits};
use crate::battery::EnergyAccount;
use crate::bench::{median, unbounded_budgets};
use crate::cache::ModelCache;
use crate::dataset::Dataset;
use crate::engine::EngineError;
use crate::frames::{ClassMix, FrameSource};
use crate::picture::{Picture, PixelFormat};
use crate::request::{self, AppSet, IntakeSender, Reply, Request};

#[derive(Debug, Clone, Serialize)]
pub struct ApiReport {
    pub variant: String,
    pub calls: usize,
    pub rounds: usize,
    pub in_process_us: f64,
    pub tcp_us: f64,
    pub unix_us: f64,
    pub tcp_ratio: f64,
    pub unix_ratio: f64,
}

/// A keep-alive HTTP/1.1 client for one connection (enough for this benchmark's calls).
struct Client<S: Read + Write> {
    reader: BufReader<S>,
}

impl<S: Read + Write> Client<S> {
    fn call(&mut self, path: &str, body: &[u8]) -> anyhow::Result<()> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        anyhow::ensure!(line.starts_with("HTTP/1.1 200"), "API answered {line:?}");
        let mut len = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse()?;
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(())
    }
}

fn pin_variant(variant: &str) -> Assignment {
    Assignment {
        epoch: 1,
        node_id: "bench".into(),
        issued_unix_ms: 0,
        apps: vec![AppAssignment {
            app: "garment".into(),
            mix: vec![MixEntry {
                variant: variant.into(),
                place: PlaceTag::Device,
                fraction: 1.0,
            }],
            allowed_variants: vec![variant.into()],
            offload_target: None,
            offload_server: None,
            energy_budget_j_per_request: 0.0,
            cost_budget_usd_per_request: 0.0,
            specialised: None,
        }],
        energy_price: 0.0,
        cost_price: 0.0,
        plan_gap: 0.0,
    }
}

fn in_process(intake: &IntakeSender, picture: &Picture) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let now = Instant::now();
    intake
        .offer(Request {
            picture: picture.clone(),
            apps: AppSet::one(0),
            truth: None,
            skewed: false,
            arrived: now,
            deadline: now + Duration::from_secs(10),
            reply: Some(tx),
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match rx.blocking_recv()? {
        Reply::Served(_) => Ok(()),
        other => anyhow::bail!("the loop answered {other:?}"),
    }
}

pub fn run(
    manifest: &Manifest,
    dir: &Path,
    data: &Dataset,
    variant: &str,
    calls: usize,
    rounds: usize,
) -> anyhow::Result<ApiReport> {
    manifest
        .variant(variant)
        .with_context(|| format!("no variant {variant}"))?;
    let catalog = Arc::new(Catalog::from_manifest(manifest, "laptop")?);
    let budgets = unbounded_budgets();
    let mut policy = scheduler::policy::by_name("mcdnn", &catalog, &budgets)?;
    policy.declare_rate("garment", 1e3);
    let handles = ServeHandles::default();
    handles.assignment.offer(pin_variant(variant));
    let (tx, rx) = request::intake(64);
    let stop = Arc::new(AtomicBool::new(false));
    // An admitted rate no call reaches: the benchmark measures the path, not admission.
    let apps = vec![("garment".to_string(), 1e9)];
    let runtime = tokio::runtime::Runtime::new()?;
    let tmp = tempfile_dir()?;
    let socket = tmp.join("api.sock");
    let cancel = tokio_util::sync::CancellationToken::new();
    let api = Api::new(
        apps.clone(),
        Arc::new(manifest.clone()),
        tx.clone(),
        handles.assignment.clone(),
        ApiLimits::default(),
    );
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(api::serve_tcp(api.clone(), listener, cancel.clone()));
        let unix = api::bind_socket(&socket)?;
        tokio::spawn(api::serve_unix(api.clone(), unix, cancel.clone()));
        anyhow::Ok(addr)
    })?;
    let model_dir = dir.to_path_buf();
    let fetch: crate::cache::Fetch = Box::new(move |f| {
        std::fs::read(model_dir.join(&f.file)).map_err(|source| EngineError::Read {
            path: f.file.clone(),
            source,
        })
    });
    let report = std::thread::scope(|s| {
        let serving = s.spawn(|| {
            Server {
                manifest,
                catalog,
                data,
                cache: ModelCache::new(manifest.clone(), fetch, 64_000_000),
                policy,
                frames: FrameSource::new(
                    data,
                    ClassMix::Uniform,
                    rand::rngs::StdRng::seed_from_u64(1),
                ),
                intake: Some(rx),
                energy: EnergyAccount::new(1e12, 1e12, u64::MAX / 2, false),
                handles: handles.clone(),
                results: Results::default(),
                offloader: None,
                stop: stop.clone(),
                clock: net::clock::SystemClock::shared(),
                learning: Default::default(),
                follower: Default::default(),
                faces: Default::default(),
            }
            .run(&ServeConfig {
                apps: apps.clone(),
                budgets: budgets.clone(),
                replay: false,
                duration: None,
                publish_every: Duration::from_secs(3600),
                face_audit_every: 0,
            })
        });
        let measured = measure(data, &tx, addr, &socket, calls, rounds);
        stop.store(true, Ordering::Relaxed);
        let served = serving
            .join()
            .map_err(|_| anyhow::anyhow!("serving thread panicked"))?;
        served?;
        measured
    });
    cancel.cancel();
    let _ = std::fs::remove_dir_all(&tmp);
    let (a, b, c) = report?;
    Ok(ApiReport {
        variant: variant.into(),
        calls,
        rounds,
        in_process_us: a,
        tcp_us: b,
        unix_us: c,
        tcp_ratio: b / a,
        unix_ratio: c / a,
    })
}

/// A private folder for the benchmark's socket.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mcdnn-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Median µs per call of each path over `rounds`, the paths taking turns at going first.
fn measure(
    data: &Dataset,
    intake: &IntakeSender,
    addr: std::net::SocketAddr,
    socket: &Path,
    calls: usize,
    rounds: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut tcp = Client {
        reader: BufReader::new(stream),
    };
    let mut unix = Client {
        reader: BufReader::new(std::os::unix::net::UnixStream::connect(socket)?),
    };
    let path = format!(
        "/v1/apps/garment/infer?width={}&height={}&format=gray8",
        data.cols, data.rows
    );
    let pictures: Vec<Picture> = (0..calls.max(1))
        .map(|k| {
            let i = (k * 7919) % data.len();
            Picture::new(
                data.cols as u32,
                data.rows as u32,
                PixelFormat::Gray8,
                data.image(i).to_vec(),
            )
        })
        .collect::<Result<_, _>>()?;
    let mut times: [Vec<f64>; 3] = Default::default();
    // Warm-up: the policy drops a cold start's first requests until the variant is loaded.
    let mut warm = 0;
    while in_process(intake, &pictures[0]).is_err() {
        warm += 1;
        anyhow::ensure!(warm < 1000, "the serving loop never answered");
    }
    for p in pictures.iter().take(20) {
        in_process(intake, p)?;
        tcp.call(&path, &p.pixels)?;
        unix.call(&path, &p.pixels)?;
    }
    for round in 0..rounds.max(1) {
        for k in 0..3 {
            let which = (round + k) % 3;
            let started = Instant::now();
            for p in &pictures {
                match which {
                    0 => in_process(intake, p)?,
                    1 => tcp.call(&path, &p.pixels)?,
                    _ => unix.call(&path, &p.pixels)?,
                }
            }
            times[which].push(started.elapsed().as_secs_f64() * 1e6 / pictures.len() as f64);
        }
    }
    let [mut a, mut b, mut c] = times;
    Ok((median(&mut a), median(&mut b), median(&mut c)))
}
