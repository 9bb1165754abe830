//! The message routes, each declared once: its key (from [`crate::names::route`]),
//! the policy action it needs and the counter its frames go to. The `message_routes!`
//! table yields [`MessageRoute`], [`MessageRoute::ALL`] and the three lookups, so
//! no route can be left out of one of them.
//!
//! Adding a route touches, besides its row here:
//! 1. its key in [`crate::names::route`];
//! 2. its frame counter in the `counters!` table of [`crate::metrics`];
//! 3. a policy [`Action`] in [`crate::policy`], if it needs one, and its check
//!    in `Policies::check`;
//! 4. its frame in [`crate::protocol::ClientFrame`], parsed in `protocol/client.rs`
//!    (and any reply frame in `protocol/server.rs`), and its arm in
//!    [`MessageRoute::of`];
//! 5. a file in `handlers/message/` with its function, its `mod` line and its arm
//!    in `dispatch` (`handlers/message/mod.rs`), and its room in `room_of` there if
//!    it names one;
//! 6. template.yaml: the `AWS::ApiGatewayV2::Route` (and `RouteResponse` for a
//!    two-way route) on the message integration;
//! 7. docs/protocol.md (the frame), docs/operations.md (its `frames` counter), and
//!    the JavaScript client's frame types (`clients/js/src/types.ts`);
//! 8. tests: the frame's parsing (`protocol/client.rs`), the handler
//!    (`crates/core/tests/handlers.rs`) and the end-to-end route (`tests/tests/`).
//!
//! `roomcast dev` serves every route in [`MessageRoute::ALL`] without more work.

use crate::metrics::Counter;
use crate::names::route;
use crate::policy::Action;
use crate::protocol::ClientFrame;

macro_rules! message_routes {
    ($($(#[$doc:meta])* $variant:ident => $key:expr, $action:expr, $counter:expr;)*) => {
        /// A custom route of the message function (besides `$default`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum MessageRoute {
            $($(#[$doc])* $variant,)*
        }

        impl MessageRoute {
            /// Every message route, in the table's order.
            pub const ALL: [Self; [$(stringify!($variant)),*].len()] = [$(Self::$variant),*];

            /// The route key (`$request.body.action`).
            pub const fn key(self) -> &'static str {
                match self {
                    $(Self::$variant => $key,)*
                }
            }

            /// The policy action the route's room needs, if any.
            pub const fn action(self) -> Option<Action> {
                match self {
                    $(Self::$variant => $action,)*
                }
            }

            /// The counter its frames are counted in.
            pub const fn counter(self) -> Counter {
                match self {
                    $(Self::$variant => $counter,)*
                }
            }
        }
    };
}

message_routes! {
    Join => route::JOIN, Some(Action::Join), Counter::FrameJoin;
    Leave => route::LEAVE, None, Counter::FrameLeave;
    Send => route::SEND, Some(Action::Send), Counter::FrameSend;
    Ping => route::PING, None, Counter::FramePing;
    /// Needs `history` in the room's policy.
    History => route::HISTORY, Some(Action::History), Counter::FrameHistory;
    /// Needs `presence` in the room's policy.
    Presence => route::PRESENCE, Some(Action::Presence), Counter::FramePresence;
}

impl MessageRoute {
    /// The route of a parsed frame.
    pub fn of(frame: &ClientFrame<'_>) -> Self {
        match frame {
            ClientFrame::Join { .. } => Self::Join,
            ClientFrame::Leave { .. } => Self::Leave,
            ClientFrame::Send { .. } => Self::Send,
            ClientFrame::Ping => Self::Ping,
            ClientFrame::History { .. } => Self::History,
            ClientFrame::Presence { .. } => Self::Presence,
        }
    }
}
