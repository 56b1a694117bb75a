//! The server side (standing in for the operator's core): answers every
//! INVITE and BYE with 200, and times each INVITE's arrival and its 200.

use crate::messages::{answer, parse, x_call};
use crate::record::{Stamp, Timeline};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub fn serve(socket: UdpSocket, timeline: Arc<Timeline>, stop: Arc<AtomicBool>) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue; // read timeout: look at `stop` again
        };
        let arrived = Instant::now();
        let Some(request) = parse(&buf[..len]).filter(|m| m.is_request()) else {
            continue;
        };
        let call = (request.method() == Some("INVITE"))
            .then(|| x_call(&request))
            .flatten();
        if let Some(call) = call {
            timeline.mark(call, Stamp::InviteArrived, arrived);
        }
        let Some(reply) = answer(&request, local) else {
            continue;
        };
        if let Some(call) = call {
            timeline.mark(call, Stamp::OkSent, Instant::now());
        }
        if let Err(e) = socket.send_to(&reply, from) {
            eprintln!("loadgen server: send to {from}: {e}");
        }
    }
}
