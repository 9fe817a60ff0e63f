^ncd: error: verify_define\.ncd: running 'Attention': out of memory: an intermediate needs 4\.00 TiB, [0-9.]+ [KMGT]iB is available
ncd: error: verification of the optimized 'Attention' ran out of memory \(sizes: -D q=1048576 -D k=1048576\); nothing written \(a smaller --verify-size, or --no-verify\)
$
