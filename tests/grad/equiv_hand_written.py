"""`ncd equiv` takes two gradient files: ncd grad's and a hand-written one agree.

attention_hand.ncd writes the causal attention core's gradient as a textbook
does (P kept from the forward, dS = P * (dP - rowsum(dP * P))); `ncd grad`
derives FlashAttention's form (P recomputed from the rows' logsumexp,
D = rowsum(dO * O)). `ncd equiv` runs both on the same random data at several
sizes and must call them equivalent (exit 0).
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NCD = os.environ.get("NCD") or os.path.join(ROOT, "build", "bin", "ncd")

FORWARD = """default dtype f32

axis q = 8, k = 8, d = 4

diagram CausalAttention(Q[q, d], K[k, d], V[k, d]) -> O[q, d] {
  S[q, k] = where(q >= k, Q[q, d] * K[k, d] * rsqrt(#d), -inf)
  O[q, d] = softmax[k](S[q, k]) * V[k, d]
}
"""


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        forward = os.path.join(work, "attention.ncd")
        with open(forward, "w", encoding="utf-8") as f:
            f.write(FORWARD)
        for sizes in (["q=8", "k=8", "d=4"], ["q=33", "k=33", "d=16"]):
            defines = [x for size in sizes for x in ("-D", size)]
            grad = os.path.join(work, "grad.ncd")
            subprocess.run([NCD, "grad", forward, "--no-train", "-o", grad] + defines, check=True)
            result = subprocess.run([NCD, "equiv", grad, os.path.join(HERE, "attention_hand.ncd"), "--diagram",
                                     "CausalAttention_grad"] + defines, capture_output=True, text=True)
            ok = result.returncode == 0 and "equivalent: 3 outputs" in result.stdout
            print("%s %s: %s" % ("pass" if ok else "FAIL", " ".join(sizes), result.stdout.strip().splitlines()[-1:]))
            if not ok:
                print(result.stdout + result.stderr)
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
