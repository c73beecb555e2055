//! The status codes every export returns, in numbered blocks, and
//! `switchyard_strerror`.
//!
//! In: nothing. Out: `switchyard_status` values (an `int32_t`, so a host
//! that returns an unknown number is never undefined behaviour). `0` is
//! success; every error is negative; the hundreds digit names the block.

use std::ffi::c_char;

/// A status: `SWITCHYARD_OK` (0) or a negative `SWITCHYARD_*` error code.
pub type switchyard_status = i32;

/// Success.
pub const SWITCHYARD_OK: switchyard_status = 0;

// -1 .. -99: argument and process errors, shared by every function.
/// A required pointer argument was NULL.
pub const SWITCHYARD_NULL_ARGUMENT: switchyard_status = -1;
/// An argument is out of range or malformed; the message says which.
pub const SWITCHYARD_INVALID_ARGUMENT: switchyard_status = -2;
/// A string argument is not valid UTF-8.
pub const SWITCHYARD_INVALID_UTF8: switchyard_status = -3;
/// A panic inside the library was caught at the boundary; the operation did
/// not complete. The library stays usable.
pub const SWITCHYARD_PANIC: switchyard_status = -4;
/// A handle was used in a state that does not allow the call (a channel
/// already given to an engine, a queue already attached to another engine, a
/// context used outside its callback).
pub const SWITCHYARD_INVALID_STATE: switchyard_status = -5;

// -100 .. -199: configuration.
/// A configuration value is out of range; the message names the field.
pub const SWITCHYARD_CONFIG_INVALID: switchyard_status = -100;

// -200 .. -299: channels and the engine's life.
/// A channel definition is invalid (duplicate route or path, bad routing
/// key, empty name...).
pub const SWITCHYARD_CHANNEL_INVALID: switchyard_status = -200;
/// A socket or thread could not be set up (address in use...).
pub const SWITCHYARD_IO: switchyard_status = -201;
/// The engine has stopped.
pub const SWITCHYARD_STOPPED: switchyard_status = -202;

// -300 .. -399: ids.
/// The id no longer names anything live: a second reply, a reply after the
/// connection closed or the request timed out, or any call after the engine
/// stopped. Nothing was sent. Never undefined behaviour.
pub const SWITCHYARD_STALE: switchyard_status = -300;
/// The number is not an id (2^53 or more).
pub const SWITCHYARD_INVALID_ID: switchyard_status = -301;
/// The request could not be deferred (the call is not a request, or the
/// loop's table of pending requests is full).
pub const SWITCHYARD_CANNOT_DEFER: switchyard_status = -302;

// -400 .. -499: data.
/// The text is not valid JSON.
pub const SWITCHYARD_INVALID_JSON: switchyard_status = -400;
/// The JSON is valid but not one object (pushes must be objects).
pub const SWITCHYARD_NOT_AN_OBJECT: switchyard_status = -401;
/// A topic is longer than 256 bytes.
pub const SWITCHYARD_TOPIC_TOO_LONG: switchyard_status = -402;
/// An error code is not `snake_case` ASCII (`[a-z0-9_]+`).
pub const SWITCHYARD_INVALID_ERROR_CODE: switchyard_status = -403;

// -500 .. -599: the completion queue.
/// The completion queue could not be set up (pipe creation failed).
pub const SWITCHYARD_CQ_SETUP: switchyard_status = -500;

// -600 .. -699: the engine's built-in middleware.
/// A built-in middleware setting is invalid: a schema that is not a JSON
/// Schema, a rate that is not positive, an unknown scope.
pub const SWITCHYARD_MIDDLEWARE_INVALID: switchyard_status = -600;

/// The static, NUL-terminated name of a status, e.g. `"SWITCHYARD_STALE"`,
/// followed by a short description. Unknown numbers give
/// `"SWITCHYARD_UNKNOWN"`. Never NULL; never to be freed.
///
/// Thread-safety: any thread, any time.
#[no_mangle]
pub extern "C" fn switchyard_strerror(status: switchyard_status) -> *const c_char {
    let s: &'static [u8] = match status {
        SWITCHYARD_OK => b"SWITCHYARD_OK: success\0",
        SWITCHYARD_NULL_ARGUMENT => b"SWITCHYARD_NULL_ARGUMENT: a required pointer was NULL\0",
        SWITCHYARD_INVALID_ARGUMENT => b"SWITCHYARD_INVALID_ARGUMENT: an argument is invalid\0",
        SWITCHYARD_INVALID_UTF8 => b"SWITCHYARD_INVALID_UTF8: a string is not valid UTF-8\0",
        SWITCHYARD_PANIC => b"SWITCHYARD_PANIC: a panic was caught inside the library\0",
        SWITCHYARD_INVALID_STATE => {
            b"SWITCHYARD_INVALID_STATE: the handle's state does not allow this call\0"
        }
        SWITCHYARD_CONFIG_INVALID => {
            b"SWITCHYARD_CONFIG_INVALID: a configuration value is out of range\0"
        }
        SWITCHYARD_CHANNEL_INVALID => {
            b"SWITCHYARD_CHANNEL_INVALID: a channel definition is invalid\0"
        }
        SWITCHYARD_IO => b"SWITCHYARD_IO: a socket or thread could not be set up\0",
        SWITCHYARD_STOPPED => b"SWITCHYARD_STOPPED: the engine has stopped\0",
        SWITCHYARD_STALE => b"SWITCHYARD_STALE: the id is no longer live\0",
        SWITCHYARD_INVALID_ID => b"SWITCHYARD_INVALID_ID: the number is not an id\0",
        SWITCHYARD_CANNOT_DEFER => b"SWITCHYARD_CANNOT_DEFER: the request could not be deferred\0",
        SWITCHYARD_INVALID_JSON => b"SWITCHYARD_INVALID_JSON: the text is not valid JSON\0",
        SWITCHYARD_NOT_AN_OBJECT => b"SWITCHYARD_NOT_AN_OBJECT: the JSON is not one object\0",
        SWITCHYARD_TOPIC_TOO_LONG => {
            b"SWITCHYARD_TOPIC_TOO_LONG: a topic is longer than 256 bytes\0"
        }
        SWITCHYARD_INVALID_ERROR_CODE => {
            b"SWITCHYARD_INVALID_ERROR_CODE: an error code must be snake_case\0"
        }
        SWITCHYARD_CQ_SETUP => b"SWITCHYARD_CQ_SETUP: the completion queue could not be set up\0",
        SWITCHYARD_MIDDLEWARE_INVALID => {
            b"SWITCHYARD_MIDDLEWARE_INVALID: a built-in middleware setting is invalid\0"
        }
        _ => b"SWITCHYARD_UNKNOWN\0",
    };
    s.as_ptr().cast()
}
