//! # sp-protocols: the scalability protocols of spstack
//!
//! Each protocol comes twice: a raw form ([`raw`]) that only routes and
//! parses headers, and a cooked form that is a message layer over it
//! ([`req::Req0`], [`rep::Rep0`], [`plain::Plain`]).
//!
//! ```
//! use sp_core::{ProtocolId, RawProtocol};
//! assert_eq!(sp_protocols::raw::Req0Raw.peer(), ProtocolId::REP0);
//! ```

pub mod bus;
pub mod pair1;
pub mod plain;
pub mod pubsub;
pub mod raw;
pub mod rep;
pub mod req;
pub mod survey;

pub use bus::{reflect, Bus0Raw};
pub use pair1::{Pair1, Pair1Raw};
pub use plain::Plain;
pub use pubsub::{Pub0Raw, Sub0, Sub0Raw, SubControl};
pub use rep::Rep0;
pub use req::{Req0, ReqState};
pub use survey::{Respondent0, Respondent0Raw, Surveyor0, Surveyor0Raw, SurveyorControl};
