//! How errors leave the server: always the protocol's one error frame,
//! `{"type":"error","code":..,"message":..}` ([`Reply::error`]), with the HTTP status that fits
//! the code. This is the only place that maps codes to statuses.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quartet_protocol::limits::MAX_COMMAND_BYTES;
use quartet_protocol::{Error, ErrorCode, Reply};

/// An error on its way to the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: Error,
}

impl ApiError {
    /// A `bad_request` with its message.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        Error::bad_request(message).into()
    }
}

/// The HTTP status for an error code.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::BadCursor => StatusCode::BAD_REQUEST,
        ErrorCode::NotJoined => StatusCode::CONFLICT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::UnknownClient | ErrorCode::UnknownUser | ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::LimitReached | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError { status: status_of(error.code), error }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(ErrorCode::TooLarge, format!("the body may be at most {MAX_COMMAND_BYTES} bytes"))
                .into()
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Reply::error_json(self.error);
        (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// The answer when a handler panics (a bug): a JSON 500, and the server goes on serving.
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::from(Error::new(ErrorCode::Internal, "the server hit a bug; it keeps serving")).into_response()
}
