//! The paced load generator used for latency runs (`examples/loadgen`)
//! against the host: every call completes, both hops of each are timed,
//! and the host holds no call afterwards.

use escalator_e2e::{free_udp_port, host_toward, status_when_idle};
use escalator_loadgen::schedule::Arrivals;
use escalator_loadgen::{run, Settings};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_calls_through_the_host_all_complete_and_are_timed_per_hop() -> anyhow::Result<()> {
    let server = free_udp_port();
    let host = host_toward(server, 3).await?;
    let target = host.udp_addr().expect("UDP listener");
    let calls = 120;
    let report = tokio::task::spawn_blocking(move || {
        run(&Settings {
            target,
            client: "127.0.0.1:0".parse().expect("literal"),
            server: Some(server),
            rate: 300.0,
            calls,
            arrivals: Arrivals::Poisson,
            seed: 11,
            linger: Duration::from_secs(20),
        })
    })
    .await??;
    assert_eq!((report.successful, report.failed), (calls, 0));
    assert_eq!(
        report.invite_hop().len(),
        calls,
        "every INVITE reached the server"
    );
    assert_eq!(report.ok_hop().len(), calls, "every 200 reached the client");
    let status = status_when_idle(&host, Duration::from_secs(5)).await?;
    assert!(status.starts_with("calls=0 "), "{status}");
    host.shutdown(Duration::from_millis(100)).await;
    Ok(())
}
