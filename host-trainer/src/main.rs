fn main() {
    eprintln!("rsim: the trainer is not built yet");
    std::process::exit(2);
}
