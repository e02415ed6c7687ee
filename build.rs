// sqlx::migrate! embeds migrations at compile time; rebuild when they change. The playground's
// built assets (playground/dist, committed) are embedded by memory-serve.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    memory_serve::load_directory("playground/dist");
}
