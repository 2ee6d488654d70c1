//! What the serving loop serves: requests. Every input (the local API, a video source, the
//! Fashion-MNIST replay) hands over a [`Request`]: a picture of any size, the apps due on it, an
//! optional ground truth, a deadline and an optional reply channel. Outside clients (API, video)
//! put requests on a bounded [`Intake`]: when it is full they are refused at once (the API
//! answers 503, a video frame counts as dropped), so nothing queues without bound.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use scheduler::catalog::Place;
use tokio::sync::oneshot;

use crate::engine::Prediction;
use crate::picture::Picture;

/// The apps due on a request, as bits over the serving loop's app list (at most 64 apps: a
/// request carries them without allocating).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppSet(u64);

/// The most apps a node serves.
pub const MAX_APPS: usize = 64;

impl AppSet {
    pub fn one(app: usize) -> Self {
        let mut s = Self::default();
        s.insert(app);
        s
    }

    pub fn insert(&mut self, app: usize) {
        if app < MAX_APPS {
            self.0 |= 1 << app;
        }
    }

    pub fn contains(self, app: usize) -> bool {
        app < MAX_APPS && self.0 & (1 << app) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
}

/// How one app's request ended, as its caller is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Served(Served),
    /// Its deadline passed before the loop reached it.
    Late,
    /// The policy dropped it (budget out), or no variant could run it.
    Dropped,
    /// Never handed over: the intake was full (a batch item after the first).
    Refused,
}

/// An answered request.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub prediction: Prediction,
    /// The label's class name.
    pub class: String,
    pub variant: String,
    pub place: Place,
    /// From the request's arrival to its answer (queueing included).
    pub latency_ms: f64,
    /// Epoch of the coordinator assignment in force (0: none yet).
    pub plan_epoch: u64,
}

pub struct Request {
    pub picture: Picture,
    pub apps: AppSet,
    /// The picture's data set label (the replay knows it; API calls and video frames do not).
    pub truth: Option<u8>,
    /// Drawn during the replay's skewed phase.
    pub skewed: bool,
    pub arrived: Instant,
    /// Served after this instant, it is dropped and counted as late.
    pub deadline: Instant,
    /// Where the answer goes (one app only: an API call).
    pub reply: Option<oneshot::Sender<Reply>>,
}

/// The sending side of the intake, one clone per client.
#[derive(Debug, Clone)]
pub struct IntakeSender(SyncSender<Request>);

/// Why a request was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the serving loop's intake is full")]
    Full,
    #[error("the node is not serving")]
    Closed,
}

impl IntakeSender {
    /// Hands `request` over without waiting: a full intake refuses it.
    pub fn offer(&self, request: Request) -> Result<(), Refused> {
        self.0.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(_) => Refused::Closed,
        })
    }
}

/// The receiving side, owned by the serving loop.
pub struct Intake(pub(crate) Receiver<Request>);

/// A bounded intake holding at most `capacity` requests.
pub fn intake(capacity: usize) -> (IntakeSender, Intake) {
    let (tx, rx) = sync_channel(capacity.max(1));
    (IntakeSender(tx), Intake(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picture::PixelFormat;

    fn request() -> Request {
        Request {
            picture: Picture::new(1, 1, PixelFormat::Gray8, vec![0]).expect("valid"),
            apps: AppSet::one(0),
            truth: None,
            skewed: false,
            arrived: Instant::now(),
            deadline: Instant::now(),
            reply: None,
        }
    }

    #[test]
    fn a_full_intake_refuses_at_once() {
        let (tx, rx) = intake(2);
        assert_eq!(tx.offer(request()), Ok(()));
        assert_eq!(tx.offer(request()), Ok(()));
        assert_eq!(tx.offer(request()), Err(Refused::Full));
        drop(rx);
        assert_eq!(tx.offer(request()), Err(Refused::Closed));
    }

    #[test]
    fn app_sets() {
        let mut s = AppSet::one(3);
        s.insert(63);
        s.insert(64);
        assert!(s.contains(3) && s.contains(63) && !s.contains(64) && !s.contains(0));
        assert_eq!(s.len(), 2);
    }
}
