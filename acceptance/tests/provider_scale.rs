//! Fifty hostnames applied at Terraform's default parallelism: all created, all updated
//! (no lost update), and a second plan is empty.

use acceptance::provider::{Inventory, config};
use acceptance::{EdgeProcess, Terraform};

const COUNT: usize = 50;

fn main_tf(port_base: u16) -> String {
    config(&format!(
        r#"
resource "postern_tunnel" "web" {{
  name = "web"
}}

resource "postern_hostname" "many" {{
  count     = {COUNT}
  hostname  = "h${{count.index}}.example.com"
  service   = "http://127.0.0.1:${{{port_base} + count.index}}"
  tunnel_id = postern_tunnel.web.id
}}
"#
    ))
}

#[tokio::test]
async fn fifty_hostnames_apply_at_default_parallelism() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf(4000));
    tf.init();

    for port_base in [4000_u16, 5000] {
        tf.apply().success();
        let edge_now = Inventory::read(&client).await;
        let tunnel = edge_now.tunnel("web").id;
        assert_eq!(edge_now.hostnames.len(), COUNT);
        for i in 0..COUNT {
            let hostname = edge_now.hostname(&format!("h{i}.example.com"));
            assert_eq!(hostname.spec.tunnel_id, Some(tunnel));
            assert_eq!(
                hostname.spec.service,
                format!("http://127.0.0.1:{}", usize::from(port_base) + i),
                "h{i}"
            );
        }
        let clean = tf.plan_exit_code();
        assert_eq!(clean.code, 0, "{}", clean.all());
        // Next round: every hostname changes at once.
        tf.write("main.tf", &main_tf(5000));
    }
}
