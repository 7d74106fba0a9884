//! Hostility on the DNS port's TCP side, against the real `postern-edge` (the UDP side's
//! random datagrams are in `dns.rs`): a length prefix larger than the data, frames trickled a
//! byte at a time, a zero-length frame, pipelined frames, and a thousand idle connections. The
//! edge keeps answering over TCP and UDP, closes the connections that stall, and logs no panic.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acceptance::EdgeProcess;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a well-behaved query may wait for its answer while the port is under load.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The edge closes a TCP connection that sends nothing for 10 s; allow some slack.
const IDLE_CLOSE_WITHIN: Duration = Duration::from_secs(20);

/// Idle connections held open at once.
const IDLE_CONNECTIONS: usize = 1_000;

fn query(id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(
        Name::from_ascii("example.com.").expect("name"),
        RecordType::SOA,
    ));
    message.to_vec().expect("encode")
}

fn framed(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(message.len()).expect("short message");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(message);
    frame
}

/// Reads one length-prefixed answer and checks that it answers `id` with NOERROR.
async fn read_answer(stream: &mut TcpStream, id: u16) {
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_WITHIN, read)
        .await
        .expect("a TCP answer in time")
        .expect("a TCP answer");
    let answer = Message::from_vec(&answer).expect("a decodable answer");
    assert_eq!(answer.metadata.id, id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
}

/// A normal query over a fresh TCP connection is answered.
async fn tcp_answers(dns: SocketAddr, id: u16) {
    let mut stream = tokio::time::timeout(ANSWER_WITHIN, TcpStream::connect(dns))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.write_all(&framed(&query(id))).await.expect("send");
    read_answer(&mut stream, id).await;
}

/// A normal query over UDP is answered.
async fn udp_answers(dns: SocketAddr, id: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    socket.send_to(&query(id), dns).await.expect("send");
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(ANSWER_WITHIN, socket.recv_from(&mut buffer))
        .await
        .expect("a UDP answer in time")
        .expect("a UDP answer");
    let answer = Message::from_vec(&buffer[..len]).expect("a decodable answer");
    assert_eq!(answer.metadata.id, id);
}

/// Waits until the server closes `stream` (EOF or reset); `false` if it is still open then.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout(within, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn lying_trickled_and_idle_tcp_clients_do_not_stop_dns() {
    let edge = EdgeProcess::start();
    let dns = edge.addrs.dns;
    let started = Instant::now();

    // A length prefix that promises 65,535 bytes, followed by ten.
    let mut liar = TcpStream::connect(dns).await.expect("connect");
    liar.write_all(&[0xff, 0xff]).await.expect("send");
    liar.write_all(&[0u8; 10]).await.expect("send");
    // Half a length prefix, then nothing.
    let mut half = TcpStream::connect(dns).await.expect("connect");
    half.write_all(&[0x00]).await.expect("send");
    tcp_answers(dns, 1).await;

    // A frame trickled a byte at a time is answered once complete.
    let mut slow = TcpStream::connect(dns).await.expect("connect");
    for byte in framed(&query(2)) {
        slow.write_all(&[byte]).await.expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read_answer(&mut slow, 2).await;
    // The prefix in one write, the message a second later.
    let message = query(3);
    slow.write_all(&framed(&message)[..2]).await.expect("send");
    tokio::time::sleep(Duration::from_secs(1)).await;
    slow.write_all(&message).await.expect("send");
    read_answer(&mut slow, 3).await;

    // Two frames in one write: two answers, in order.
    let mut pipelined = TcpStream::connect(dns).await.expect("connect");
    let mut both = framed(&query(4));
    both.extend(framed(&query(5)));
    pipelined.write_all(&both).await.expect("send");
    read_answer(&mut pipelined, 4).await;
    read_answer(&mut pipelined, 5).await;

    // A zero-length frame: whatever becomes of that connection, the next one is served.
    let mut empty = TcpStream::connect(dns).await.expect("connect");
    empty.write_all(&[0x00, 0x00]).await.expect("send");
    tcp_answers(dns, 6).await;

    // A thousand connections that send nothing, held open together.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(
            TcpStream::connect(dns)
                .await
                .expect("connect an idle connection"),
        );
    }
    tcp_answers(dns, 7).await;
    udp_answers(dns, 8).await;

    // The server closes what stalls: the liar, the half prefix and the idle connections.
    assert!(
        closed_within(&mut liar, IDLE_CLOSE_WITHIN).await,
        "a connection that promised more than it sent stayed open"
    );
    assert!(closed_within(&mut half, IDLE_CLOSE_WITHIN).await);
    let mut still_open = 0;
    for stream in &mut idle {
        if !closed_within(stream, Duration::from_secs(2)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "idle connections the edge did not close");
    drop(idle);

    tcp_answers(dns, 9).await;
    udp_answers(dns, 10).await;
    assert_eq!(edge.api().get("/healthz").await.status, 200);
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
    assert!(started.elapsed() < Duration::from_secs(90));
}
