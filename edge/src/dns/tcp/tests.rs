//! The TCP side over real loopback sockets, with a handler that answers every query with an
//! empty NOERROR: framing, order, the idle timeout and the cap.

use std::net::SocketAddr;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Message, Query};
use hickory_server::proto::rr::{Name, RecordType};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::*;

/// How long a test waits for an answer or a close.
const WITHIN: Duration = Duration::from_secs(5);

struct Empty;

#[async_trait::async_trait]
impl RequestHandler for Empty {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let metadata = Metadata::response_from_request(&request.metadata);
        let response = builder.build_no_records(metadata);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            }),
        }
    }
}

struct TestTcp {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
}

impl Drop for TestTcp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(max_connections: usize, idle_timeout: Duration) -> TestTcp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let metrics = Arc::new(Metrics::default());
    let cancel = CancellationToken::new();
    let config = TcpConfig {
        max_connections,
        idle_timeout,
    };
    tokio::spawn(serve(
        listener,
        Arc::new(Empty),
        config,
        metrics.clone(),
        cancel.clone(),
    ));
    TestTcp {
        addr,
        metrics,
        cancel,
    }
}

fn query(id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(
        Name::from_ascii("example.com.").expect("name"),
        RecordType::A,
    ));
    framed(&message.to_vec().expect("encode"))
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut frame = u16::try_from(message.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(message);
    frame
}

async fn read_answer(stream: &mut TcpStream) -> Message {
    let frame = tokio::time::timeout(WITHIN, read_frame(stream))
        .await
        .expect("an answer in time")
        .expect("an answer")
        .expect("an answer, not the end");
    Message::from_vec(&frame).expect("decodable")
}

/// Sends a query on `stream` and checks its answer.
async fn ask(stream: &mut TcpStream, id: u16) {
    stream.write_all(&query(id)).await.expect("send");
    assert_eq!(read_answer(stream).await.metadata.id, id);
}

/// Whether the server closes `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn pipelined_queries_are_answered_in_order_and_idle_connections_closed() {
    let tcp = start(8, Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(tcp.addr).await.expect("connect");
    let mut both = query(1);
    both.extend(query(2));
    stream.write_all(&both).await.expect("send");
    assert_eq!(read_answer(&mut stream).await.metadata.id, 1);
    assert_eq!(read_answer(&mut stream).await.metadata.id, 2);
    // Half a frame, then nothing: closed once the idle timeout passes.
    stream.write_all(&query(3)[..5]).await.expect("send");
    assert!(closed_within(&mut stream, WITHIN).await);
    assert_eq!(tcp.metrics.value(CLOSED, &[("reason", "idle")]), 1);
}

#[tokio::test]
async fn garbage_gets_formerr_or_nothing_and_the_connection_goes_on() {
    let tcp = start(8, WITHIN).await;
    let mut stream = TcpStream::connect(tcp.addr).await.expect("connect");
    // A header, then bytes that are no question: FORMERR with the query's id.
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend([0xc0, 0xff, 0xee]);
    stream.write_all(&framed(&garbage)).await.expect("send");
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.metadata.id, 0x1234);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    // Shorter than a header, a response, and an empty frame: no answer, and the next query on
    // the same connection is answered.
    let mut response = Message::query();
    response.metadata.message_type = MessageType::Response;
    stream.write_all(&framed(&[1, 2, 3])).await.expect("send");
    stream
        .write_all(&framed(&response.to_vec().expect("encode")))
        .await
        .expect("send");
    stream.write_all(&framed(&[])).await.expect("send");
    ask(&mut stream, 7).await;
}

#[tokio::test]
async fn at_the_cap_the_connection_idle_longest_makes_room() {
    let tcp = start(3, WITHIN).await;
    let mut held = Vec::new();
    for id in 0..3 {
        let mut stream = TcpStream::connect(tcp.addr).await.expect("connect");
        // Answered, so its task runs and it went idle after the previous one.
        ask(&mut stream, id).await;
        held.push(stream);
    }
    let mut newcomer = TcpStream::connect(tcp.addr).await.expect("connect");
    ask(&mut newcomer, 10).await;
    assert!(
        closed_within(&mut held[0], WITHIN).await,
        "the oldest idle one closes"
    );
    // The others are still served; each answer makes that connection the most recent.
    ask(&mut held[1], 11).await;
    ask(&mut held[2], 12).await;
    assert_eq!(tcp.metrics.value(CLOSED, &[("reason", "evicted")]), 1);
    // One more: now the newcomer has been idle longest.
    let mut last = TcpStream::connect(tcp.addr).await.expect("connect");
    ask(&mut last, 13).await;
    assert!(closed_within(&mut newcomer, WITHIN).await);
    ask(&mut held[1], 14).await;
}

#[test]
fn a_connection_is_refused_only_when_every_open_one_is_busy() {
    let connections = Arc::new(Connections::new(2));
    let Admission::Open(first) = connections.admit() else {
        panic!("room for the first");
    };
    let Admission::Open(second) = connections.admit() else {
        panic!("room for the second");
    };
    // Both are being served: nothing can be closed.
    first.set_busy();
    second.set_busy();
    assert!(matches!(connections.admit(), Admission::Refused));
    second.set_idle();
    let Admission::OpenAfterEvicting(third) = connections.admit() else {
        panic!("the idle one makes room");
    };
    assert!(second.evicted().is_cancelled());
    assert!(!first.evicted().is_cancelled());
    assert_eq!(connections.open(), 2);
    // A closed connection gives its place back.
    drop(second);
    assert_eq!(connections.open(), 2);
    drop(third);
    assert_eq!(connections.open(), 1);
    assert!(matches!(connections.admit(), Admission::Open(_)));
}
