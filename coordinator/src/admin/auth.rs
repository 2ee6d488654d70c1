//! Who may use the operator API. Every route needs an operator certificate from the fleet CA,
//! except [`PUBLIC_PATHS`]; writes need the admin role ([`Caller::require_admin`]). The caller's
//! name comes from its certificate and is what the audit trail records.

use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use net::identity::{Kind, OperatorRole};

use super::listener::ClientIdentity;

/// Routes a client without an operator certificate may reach: enrolment, which a device without
/// a certificate uses with a one-time token (the handler authenticates the token).
pub const PUBLIC_PATHS: &[&str] = &["/v1/enroll"];

/// Why a request was refused: a status and a message that says what to do.
pub type Refusal = (StatusCode, String);

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The operator's name, from its certificate.
    pub name: String,
    pub role: OperatorRole,
}

impl Caller {
    /// 403 unless the caller holds the admin role (`return refusal.into_response()`).
    pub fn require_admin(&self) -> Result<(), Refusal> {
        if self.role == OperatorRole::Admin {
            return Ok(());
        }
        Err((
            StatusCode::FORBIDDEN,
            format!(
                "operator {} is {}; this needs an admin certificate (mcdnnctl enroll operator NAME --role admin)\n",
                self.name, self.role
            ),
        ))
    }
}

fn caller_of(who: Option<&ClientIdentity>) -> Result<Caller, Refusal> {
    let who = who.cloned().unwrap_or_default();
    match (who.peer, who.role) {
        (Some(peer), Some(role)) if peer.kind == Kind::Operator => Ok(Caller {
            name: peer.name,
            role,
        }),
        (Some(peer), _) => Err((
            StatusCode::FORBIDDEN,
            format!(
                "{} may not use the operator API: only operator certificates may\n",
                peer.dns_name()
            ),
        )),
        (None, _) => Err((
            StatusCode::UNAUTHORIZED,
            "the operator API needs a client certificate of kind operator from the fleet CA \
             (mcdnnctl --identity-dir DIR --identity NAME)\n"
                .to_owned(),
        )),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        caller_of(parts.extensions.get::<ClientIdentity>())
    }
}

/// Middleware on the whole operator router: nothing but [`PUBLIC_PATHS`] runs for a client
/// without an operator certificate, whatever a handler forgets to ask for.
pub async fn require_operator(req: Request, next: Next) -> Response {
    if PUBLIC_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match caller_of(req.extensions().get::<ClientIdentity>()) {
        Ok(_) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}
