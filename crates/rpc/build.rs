fn main() {
    println!("cargo:rerun-if-changed=../../proto/aosd.proto");
    tonic_prost_build::configure()
        .compile_protos(&["../../proto/aosd.proto"], &["../../proto"])
        .expect("failed to compile proto/aosd.proto (is protoc installed? run hack/setup.sh)");
}
