//! What a live connection does with each client frame, as a state machine without sockets,
//! tasks or store: the frame's bytes and the connection's [`FrameState`] in, a [`Step`] out.
//! `live.rs` carries the steps out; the fuzz target `live_frame` runs this same code.

use parley_protocol::v1;
use parley_protocol::v1::client_frame::Body;

use crate::ApiError;

/// Submissions in flight per connection. Past it the connection stops reading, which pushes
/// back on the client through TCP instead of queueing without bound here.
pub const SUBMISSIONS_IN_FLIGHT: usize = 256;

/// Where pushing stands on one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Push {
    /// Hints only: the client fetches over HTTP.
    #[default]
    Off,
    /// Items up to `sent` went out on this connection.
    On { sent: u64 },
}

/// What client frames change on one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameState {
    pub push: Push,
    /// An acknowledgement is being written. One writes at a time; later ones while it runs
    /// collapse into `pending_ack`, so a flood of acks costs one write, not one task each.
    pub acking: bool,
    /// The highest acknowledgement that arrived while one was being written: written next.
    pub pending_ack: Option<u64>,
    /// Submissions handed to the delivery service and not answered yet.
    pub in_flight: usize,
}

/// How recent a session check a frame needs before it is acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Check now: a submission.
    Now,
    /// A check at most a second old will do: pushes and acknowledgements.
    Recent,
}

/// What the connection does for one frame, after the session check.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// The state changed (a push cursor, an acknowledgement folded into the pending one):
    /// nothing else to do.
    Done,
    /// Write this acknowledgement (none was running; [`FrameState::acking`] is set).
    Ack(u64),
    /// Hand this submission to the delivery service, and answer with a `LiveResult` for
    /// `request_id` (counted in [`FrameState::in_flight`]). A frame without a body is
    /// answered with the error.
    Submit {
        request_id: u64,
        submit: Result<v1::Submit, ApiError>,
    },
    /// A push cursor beyond the head this connection knows: ask the store for the device's
    /// head (the hint may still be on its way) and finish with [`FrameState::confirm_push`].
    CheckHead { after: u64 },
    /// Forward this typing indicator to the group's other online devices, within the
    /// connection's typing rate.
    Typing(v1::Typing),
}

#[derive(Debug, PartialEq)]
pub struct Step {
    pub check: Check,
    pub action: Action,
}

/// Why a frame ends the connection (logged when it closes).
pub type End = &'static str;

impl FrameState {
    /// One client frame, at queue head `head` as this connection knows it. A frame that does
    /// not parse, or has no body, ends the connection: the client is broken or hostile, and
    /// nothing it sent before is lost (accepted submissions are stored).
    pub fn on_frame(
        &mut self,
        bytes: &[u8],
        max_frame_bytes: usize,
        head: u64,
    ) -> Result<Step, End> {
        let frame: v1::ClientFrame = parley_protocol::decode(bytes, max_frame_bytes)
            .map_err(|_| "malformed client frame")?;
        let step = |check, action| Ok(Step { check, action });
        match frame.body.ok_or("empty client frame")? {
            Body::StartPush(start) if start.after <= head => {
                self.push = Push::On { sent: start.after };
                step(Check::Recent, Action::Done)
            }
            Body::StartPush(start) => step(Check::Recent, Action::CheckHead { after: start.after }),
            Body::Ack(ack) if self.acking => {
                self.pending_ack = Some(self.pending_ack.unwrap_or(0).max(ack.up_to));
                step(Check::Recent, Action::Done)
            }
            Body::Ack(ack) => {
                self.acking = true;
                step(Check::Recent, Action::Ack(ack.up_to))
            }
            Body::Typing(typing)
                if typing.group_id.len() == 16
                    && !typing.sealed.is_empty()
                    && typing.sealed.len() <= parley_protocol::limits::MAX_TYPING_SEALED_BYTES =>
            {
                step(Check::Recent, Action::Typing(typing))
            }
            Body::Typing(_) => Err("malformed typing indicator"),
            Body::Submit(live) => {
                self.in_flight += 1;
                let submit = live
                    .submit
                    .ok_or_else(|| ApiError::malformed("a live submission without a body"));
                step(
                    Check::Now,
                    Action::Submit {
                        request_id: live.request_id,
                        submit,
                    },
                )
            }
        }
    }

    /// Finishes a [`Action::CheckHead`] with the store's head for the device (`None`: the
    /// store is unavailable). A cursor beyond that too is not one the server gave out, and
    /// pushing from the head instead would hide the items the client lacks: it is refused as
    /// `GET /v1/queue` refuses it. Without the store's word, pushing starts at the head this
    /// connection knows, which at worst pushes items twice.
    pub fn confirm_push(
        &mut self,
        after: u64,
        head: u64,
        stored: Option<u64>,
    ) -> Result<(), ApiError> {
        let sent = match stored {
            Some(stored) if after <= stored => after,
            Some(stored) => return Err(crate::delivery::beyond_head("cursor", after, stored)),
            None => head.min(after),
        };
        self.push = Push::On { sent };
        Ok(())
    }

    /// The running acknowledgement finished: the pending one to write next, if any.
    pub fn ack_finished(&mut self) -> Option<u64> {
        let next = self.pending_ack.take();
        self.acking = next.is_some();
        next
    }

    /// Items up to `up_to` went out (a cursor never moves back).
    pub fn pushed(&mut self, up_to: u64) {
        if let Push::On { sent } = &mut self.push {
            *sent = up_to.max(*sent);
        }
    }

    /// `count` submissions were answered.
    pub fn answered(&mut self, count: usize) {
        self.in_flight = self.in_flight.saturating_sub(count);
    }

    /// Whether to read more frames: not while [`SUBMISSIONS_IN_FLIGHT`] wait for answers.
    pub fn reading(&self) -> bool {
        self.in_flight < SUBMISSIONS_IN_FLIGHT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_protocol::ErrorCode;
    use prost::Message as _;

    const MAX: usize = 1 << 20;

    fn frame(body: Body) -> Vec<u8> {
        v1::ClientFrame { body: Some(body) }.encode_to_vec()
    }

    fn start_push(after: u64) -> Vec<u8> {
        frame(Body::StartPush(v1::StartPush { after }))
    }

    fn ack(up_to: u64) -> Vec<u8> {
        frame(Body::Ack(v1::Ack { up_to }))
    }

    #[test]
    fn a_push_cursor_up_to_the_head_starts_pushing_and_one_beyond_asks_the_store() {
        let mut state = FrameState::default();
        let step = state.on_frame(&start_push(5), MAX, 5).unwrap();
        assert_eq!(step.action, Action::Done);
        assert_eq!(state.push, Push::On { sent: 5 });

        let step = state.on_frame(&start_push(7), MAX, 5).unwrap();
        assert_eq!(
            (step.check, step.action),
            (Check::Recent, Action::CheckHead { after: 7 })
        );
        // Unchanged until the store answers.
        assert_eq!(state.push, Push::On { sent: 5 });
        // The hint was late: the store's head covers the cursor.
        state.confirm_push(7, 5, Some(7)).unwrap();
        assert_eq!(state.push, Push::On { sent: 7 });
        // Beyond the store's head too: refused as GET /v1/queue refuses it, state unchanged.
        let refused = state.confirm_push(9, 5, Some(8)).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Malformed);
        assert_eq!(
            refused.0.message,
            "cursor 9 is beyond the queue head 8: fetch from your last processed item"
        );
        assert_eq!(state.push, Push::On { sent: 7 });
        // No store: from the head known, never beyond it.
        state.confirm_push(u64::MAX, 5, None).unwrap();
        assert_eq!(state.push, Push::On { sent: 5 });
    }

    #[test]
    fn acknowledgements_while_one_is_written_fold_into_the_highest() {
        let mut state = FrameState::default();
        assert_eq!(
            state.on_frame(&ack(3), MAX, 0).unwrap().action,
            Action::Ack(3)
        );
        for up_to in [9, 4, 7] {
            assert_eq!(
                state.on_frame(&ack(up_to), MAX, 0).unwrap().action,
                Action::Done
            );
        }
        assert_eq!(state.ack_finished(), Some(9));
        assert!(state.acking, "the folded ack is being written");
        assert_eq!(state.ack_finished(), None);
        assert!(!state.acking);
        assert_eq!(
            state.on_frame(&ack(1), MAX, 0).unwrap().action,
            Action::Ack(1)
        );
    }

    #[test]
    fn submissions_check_the_session_now_and_stop_reading_at_the_in_flight_cap() {
        let mut state = FrameState::default();
        let bodiless = frame(Body::Submit(v1::LiveSubmit {
            request_id: 4,
            submit: None,
        }));
        for n in 1..=SUBMISSIONS_IN_FLIGHT {
            assert!(state.reading());
            let step = state.on_frame(&bodiless, MAX, 0).unwrap();
            assert_eq!(step.check, Check::Now);
            let Action::Submit {
                request_id: 4,
                submit: Err(e),
            } = step.action
            else {
                panic!("{:?}", step.action);
            };
            assert_eq!(e.code(), ErrorCode::Malformed);
            assert_eq!(state.in_flight, n);
        }
        assert!(!state.reading());
        state.answered(1);
        assert!(state.reading());
    }

    #[test]
    fn a_typing_indicator_is_forwarded_only_within_its_bounds() {
        let mut state = FrameState::default();
        let typing = |group: usize, sealed: usize| {
            frame(Body::Typing(v1::Typing {
                group_id: vec![1; group],
                epoch: 3,
                sealed: vec![2; sealed],
                ..Default::default()
            }))
        };
        let step = state.on_frame(&typing(16, 40), MAX, 0).unwrap();
        assert_eq!(step.check, Check::Recent);
        assert!(matches!(step.action, Action::Typing(t) if t.epoch == 3 && t.sealed.len() == 40));
        let largest = parley_protocol::limits::MAX_TYPING_SEALED_BYTES;
        assert!(state.on_frame(&typing(16, largest), MAX, 0).is_ok());
        for (group, sealed) in [(16, largest + 1), (16, 0), (15, 40)] {
            assert_eq!(
                state.on_frame(&typing(group, sealed), MAX, 0),
                Err("malformed typing indicator")
            );
        }
    }

    #[test]
    fn frames_that_do_not_parse_or_say_nothing_end_the_connection() {
        let mut state = FrameState::default();
        assert_eq!(
            state.on_frame(&[0x0a, 0xff], MAX, 0),
            Err("malformed client frame")
        );
        assert_eq!(
            state.on_frame(&start_push(1), 1, 9),
            Err("malformed client frame")
        );
        assert_eq!(state.on_frame(&[], MAX, 0), Err("empty client frame"));
        assert_eq!(state, FrameState::default());
    }
}
