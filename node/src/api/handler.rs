//! One HTTP call: routing, reading the bounded body, admission, and handing requests to the
//! serving loop (see the module docs of [`super`] for the API itself).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use image::ImageFormat;
use scheduler::catalog::Place;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Api;
use super::upload::{self, RawShape};
use crate::picture::Picture;
use crate::request::{self as req, AppSet, Refused, Reply};

type Answer = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: &Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Answer {
    json_response(status, &json!({ "error": message.to_string() }))
}

pub async fn handle(api: Arc<Api>, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (request.method(), segments.as_slice()) {
        (&Method::GET, ["v1", "apps"]) => list(&api),
        (&Method::POST, ["v1", "apps", app, "infer"]) => {
            let app = app.to_string();
            infer(&api, &app, request).await
        }
        (_, ["v1", "apps", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET /v1/apps or POST /v1/apps/{app}/infer",
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such path {path}")),
    })
}

/// `GET /v1/apps`: each app, its admitted rate and what the assignment gives it.
fn list(api: &Api) -> Answer {
    let apps: Vec<Value> = api.assignment.read(|a| {
        api.apps
            .iter()
            .map(|(name, rate)| {
                let assigned = a.and_then(|a| a.apps.iter().find(|x| &x.app == name));
                json!({
                    "app": name,
                    "rate_per_s": rate,
                    "classes": api.manifest.app(name).map(|s| s.classes.clone()).unwrap_or_default(),
                    "plan_epoch": a.map_or(0, |a| a.epoch),
                    "variants": assigned.map(|x| x.allowed_variants.clone()).unwrap_or_default(),
                    "mix": assigned.map(|x| x.mix.iter().map(|m| json!({
                        "variant": m.variant,
                        "place": format!("{:?}", m.place).to_lowercase(),
                        "fraction": m.fraction,
                    })).collect::<Vec<_>>()).unwrap_or_default(),
                    "specialised": assigned.and_then(|x| x.specialised.as_ref()).map(|s| s.variant.clone()),
                })
            })
            .collect()
    });
    json_response(StatusCode::OK, &json!({ "apps": apps }))
}

/// The body, bounded in size (413) and time (408).
async fn body(api: &Api, request: Request<Incoming>) -> Result<Bytes, Answer> {
    let max = api.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is over {max} bytes"),
        ));
    }
    let read = Limited::new(request.into_body(), max).collect();
    match tokio::time::timeout(api.limits.body_timeout, read).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is over {max} bytes"),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// The pictures of a call: one PNG/JPEG, or `count` raw ones.
fn pictures(content_type: &str, query: &str, bytes: &[u8]) -> Result<Vec<Picture>, String> {
    let kind = content_type.split(';').next().unwrap_or("").trim();
    match kind {
        "image/png" => Ok(vec![upload::decode(bytes, ImageFormat::Png)?]),
        "image/jpeg" => Ok(vec![upload::decode(bytes, ImageFormat::Jpeg)?]),
        "application/octet-stream" => {
            let shape = RawShape::from_query(query)?;
            let count = query
                .split('&')
                .find_map(|p| p.strip_prefix("count="))
                .map_or(Ok(1), |n| {
                    n.parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or(format!("count={n:?} is not a positive number"))
                })?;
            let one = shape.bytes()?;
            if bytes.len() != one * count {
                return Err(format!(
                    "{} bytes for {count} {}x{} {:?} picture(s), which need {}",
                    bytes.len(),
                    shape.width,
                    shape.height,
                    shape.format,
                    one * count
                ));
            }
            bytes.chunks_exact(one).map(|c| shape.picture(c)).collect()
        }
        other => Err(format!(
            "content type {other:?}: send image/png, image/jpeg or application/octet-stream"
        )),
    }
}

async fn infer(api: &Api, app: &str, request: Request<Incoming>) -> Answer {
    let Some(i) = api.app_index(app) else {
        return error(StatusCode::NOT_FOUND, format!("no app {app} on this node"));
    };
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let batch = query.split('&').any(|p| p.starts_with("count="));
    let bytes = match body(api, request).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let pictures = match pictures(&content_type, &query, &bytes) {
        Ok(p) => p,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let n = pictures.len();
    if n > api.burst(i) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a batch holds at most {} pictures for {app}", api.burst(i)),
        );
    }
    if let Err(wait) = api.admit(i, n) {
        api.counters.over_rate.fetch_add(1, Ordering::Relaxed);
        let secs = wait.map_or(1, |w| w.as_secs_f64().ceil().max(1.0) as u64);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "over the admitted rate of {} calls/s for {app}",
                api.apps[i].1
            ),
        );
        r.headers_mut().insert(RETRY_AFTER, secs.into());
        return r;
    }
    let arrived = Instant::now();
    let mut waiting = Vec::with_capacity(n);
    for (k, picture) in pictures.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let offered = api.intake.offer(req::Request {
            picture,
            apps: AppSet::one(i),
            truth: None,
            skewed: false,
            arrived,
            deadline: arrived + api.limits.deadline,
            reply: Some(tx),
        });
        match offered {
            Ok(()) => waiting.push(rx),
            Err(refused) => {
                // The pictures not handed over change nothing: their tokens go back.
                api.give_back(i, n - k);
                api.counters.intake_full.fetch_add(1, Ordering::Relaxed);
                if k == 0 {
                    let status = match refused {
                        Refused::Full => StatusCode::SERVICE_UNAVAILABLE,
                        Refused::Closed => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    return error(status, refused);
                }
                break;
            }
        }
    }
    api.counters
        .accepted
        .fetch_add(waiting.len() as u64, Ordering::Relaxed);
    let mut answers = Vec::with_capacity(n);
    for rx in waiting {
        answers.push(rx.await.unwrap_or(Reply::Dropped));
    }
    answers.resize(n, Reply::Refused);
    if !batch {
        return match &answers[0] {
            Reply::Served(_) => json_response(StatusCode::OK, &reply_json(&answers[0])),
            Reply::Late => error(
                StatusCode::GATEWAY_TIMEOUT,
                "the deadline passed in the serving loop",
            ),
            Reply::Dropped | Reply::Refused => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no variant could answer (energy or cost budget spent, or no model loadable)",
            ),
        };
    }
    json_response(
        StatusCode::OK,
        &json!({ "answers": answers.iter().map(reply_json).collect::<Vec<_>>() }),
    )
}

fn reply_json(reply: &Reply) -> Value {
    match reply {
        Reply::Served(s) => json!({
            "label": s.prediction.label,
            "class": s.class,
            "score": s.prediction.score,
            "variant": s.variant,
            "place": match s.place { Place::Device => "device", Place::Server => "server" },
            "latency_ms": s.latency_ms,
            "plan_epoch": s.plan_epoch,
        }),
        Reply::Late => json!({ "error": "the deadline passed in the serving loop" }),
        Reply::Dropped => json!({ "error": "no variant could answer" }),
        Reply::Refused => json!({ "error": "the serving loop's intake is full" }),
    }
}
