;; SIMD kernels of round-to-nearest weight quantization: the min-max scan of the cells and the rounding of the
;; codes, the two elementwise loops that are most of a weight-only compile (DiT-XL/2: 675 M weights). The driver,
;; weight-kernels.ts, copies a chunk of a weight into this module's memory, calls one kernel, and copies the result
;; out; `npm run build:wasm` assembles this file into weight-kernels.wasm.ts (a test checks the two agree).
;;
;; Every kernel computes what the scalar loops of weight-quantizer.ts compute, bit for bit: codes are
;; nearest(x / s) + z in float64 (x and s float32, ties to even), clamped to [qmin, qmax], computed as JS does,
;; x / s + 1.5·2^52 (which rounds) + z, clamped in that biased domain, where the code is the low 32 bits of the
;; float64 (no float-to-int conversion). Min, max and the clamps are the pseudo-min/max b < a ? b : a (one
;; instruction, and JS's comparisons exactly). Codes are stored as their low 8 bits (int8 or uint8), or as
;; nibbles, two to a byte, low nibble first (int4 or uint4). Scales and zero points come as float64 arrays.
;;
;; Two layouts, as forEachRun walks them:
;; - columns: `rows` rows of `n` values, the cell of value (r, j) is j (a [K][N] MatMul weight: one group's rows);
;; - groups: `rows` rows of `k` values cut into groups of `size` (the last may be shorter), one cell per group,
;;   cells stored row by row (r * ceil(k / size) + g).
;; Min and max start at 0 in groups and at the values found in `min`/`max` in columns, so a range holds 0; the
;; scans return 1 when a value was NaN (which no comparison widens a range by), and the driver names it.
;; The hot loops are written out (no calls): V8 does not inline WebAssembly calls.
(module
  ;; The memory is the caller's (shared, so a weight-quantizer worker's weights can be read into it by the main thread).
  (import "env" "memory" (memory 1 65536 shared))

  ;; 1.5 * 2^52: added to a float64 |x| < 2^51 it rounds x to an integer, ties to even, and holds that integer
  ;; (two's complement) in its low 32 bits; adding a further integer is exact.
  (global $RHE f64 (f64.const 6755399441055744))

  ;; The code of one value; $qmin and $qmax biased by RHE.
  (func $code (param $v f32) (param $s f64) (param $z f64) (param $qmin f64) (param $qmax f64) (result i32)
    (local $t f64)
    (local.set $t (f64.add (f64.add (f64.div (f64.promote_f32 (local.get $v)) (local.get $s)) (global.get $RHE)) (local.get $z)))
    (local.set $t (select (local.get $qmin) (local.get $t) (f64.lt (local.get $t) (local.get $qmin))))
    (local.set $t (select (local.get $qmax) (local.get $t) (f64.gt (local.get $t) (local.get $qmax))))
    (i32.wrap_i64 (i64.reinterpret_f64 (local.get $t))))

  ;; Stores the codes of values [$i, $end) one at a time: the tail a vector loop leaves. Value $e goes to byte $e
  ;; (bytes) or $e >> 1 (nibbles; $i is even: a lone last value fills its byte's low nibble). Scales and zero
  ;; points are $scale/$zp[$i - $cell0] (float64) when $uniform is 0, else $s and $z.
  (func $tail (param $vals i32) (param $i i32) (param $end i32) (param $uniform i32) (param $scale i32) (param $zp i32) (param $cell0 i32)
              (param $s f64) (param $z f64) (param $out i32) (param $qmin f64) (param $qmax f64) (param $nibbles i32)
    (local $c i32) (local $c1 i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (if (i32.eqz (local.get $uniform))
          (then
            (local.set $s (f64.load (i32.add (local.get $scale) (i32.shl (i32.sub (local.get $i) (local.get $cell0)) (i32.const 3)))))
            (local.set $z (f64.load (i32.add (local.get $zp) (i32.shl (i32.sub (local.get $i) (local.get $cell0)) (i32.const 3)))))))
        (local.set $c (call $code (f32.load (i32.add (local.get $vals) (i32.shl (local.get $i) (i32.const 2)))) (local.get $s) (local.get $z) (local.get $qmin) (local.get $qmax)))
        (if (i32.eqz (local.get $nibbles))
          (then
            (i32.store8 (i32.add (local.get $out) (local.get $i)) (local.get $c))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (local.set $c1 (i32.const 0))
        (if (i32.lt_u (i32.add (local.get $i) (i32.const 1)) (local.get $end))
          (then
            (if (i32.eqz (local.get $uniform))
              (then
                (local.set $s (f64.load (i32.add (local.get $scale) (i32.shl (i32.sub (i32.add (local.get $i) (i32.const 1)) (local.get $cell0)) (i32.const 3)))))
                (local.set $z (f64.load (i32.add (local.get $zp) (i32.shl (i32.sub (i32.add (local.get $i) (i32.const 1)) (local.get $cell0)) (i32.const 3)))))))
            (local.set $c1 (call $code (f32.load (i32.add (local.get $vals) (i32.shl (i32.add (local.get $i) (i32.const 1)) (i32.const 2)))) (local.get $s) (local.get $z) (local.get $qmin) (local.get $qmax)))))
        (i32.store8 (i32.add (local.get $out) (i32.shr_u (local.get $i) (i32.const 1)))
          (i32.or (i32.and (local.get $c) (i32.const 15)) (i32.shl (i32.and (local.get $c1) (i32.const 15)) (i32.const 4))))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $next))))

  ;; Columns: codes of rows x n values at $vals (f32), value (r, j) with scale $scale[j] and zero point $zp[j]
  ;; (f64), to $out. With nibbles, n is even.
  (func (export "quantize_columns") (param $vals i32) (param $rows i32) (param $n i32) (param $scale i32) (param $zp i32)
        (param $out i32) (param $qmin f64) (param $qmax f64) (param $nibbles i32)
    (local $r i32) (local $j i32) (local $row i32) (local $p i32) (local $c i32) (local $d i32)
    (local $va v128) (local $vb v128) (local $codes v128) (local $rhe v128) (local $lo v128) (local $hi v128)
    (local.set $qmin (f64.add (local.get $qmin) (global.get $RHE)))
    (local.set $qmax (f64.add (local.get $qmax) (global.get $RHE)))
    (local.set $rhe (f64x2.splat (global.get $RHE)))
    (local.set $lo (f64x2.splat (local.get $qmin)))
    (local.set $hi (f64x2.splat (local.get $qmax)))
    (block $rows_done
      (loop $next_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $row (i32.mul (local.get $r) (local.get $n)))
        (local.set $j (i32.const 0))
        (block $vector_done
          (loop $next8
            (br_if $vector_done (i32.gt_u (i32.add (local.get $j) (i32.const 8)) (local.get $n)))
            (local.set $p (i32.add (local.get $vals) (i32.shl (i32.add (local.get $row) (local.get $j)) (i32.const 2))))
            (local.set $c (i32.add (local.get $scale) (i32.shl (local.get $j) (i32.const 3))))
            (local.set $d (i32.add (local.get $zp) (i32.shl (local.get $j) (i32.const 3))))
            (local.set $va (v128.load (local.get $p)))
            (local.set $vb (v128.load offset=16 (local.get $p)))
            (local.set $codes (i16x8.narrow_i32x4_s
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (local.get $va)) (v128.load offset=0 (local.get $c))) (local.get $rhe)) (v128.load offset=0 (local.get $d))) (local.get $lo)) (local.get $hi))
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $va) (local.get $va))) (v128.load offset=16 (local.get $c))) (local.get $rhe)) (v128.load offset=16 (local.get $d))) (local.get $lo)) (local.get $hi)))
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (local.get $vb)) (v128.load offset=32 (local.get $c))) (local.get $rhe)) (v128.load offset=32 (local.get $d))) (local.get $lo)) (local.get $hi))
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $vb) (local.get $vb))) (v128.load offset=48 (local.get $c))) (local.get $rhe)) (v128.load offset=48 (local.get $d))) (local.get $lo)) (local.get $hi)))))
            (if (local.get $nibbles)
              (then
                ;; i32 lane i holds codes 2i, 2i+1 as 16-bit halves: masked, lane | lane >> 12 has both nibbles in its low byte
                (local.set $codes (v128.and (local.get $codes) (i16x8.splat (i32.const 15))))
                (v128.store32_lane 0 (i32.add (local.get $out) (i32.shr_u (i32.add (local.get $row) (local.get $j)) (i32.const 1)))
                  (i8x16.shuffle 0 4 8 12 0 4 8 12 0 4 8 12 0 4 8 12
                    (v128.or (local.get $codes) (i32x4.shr_u (local.get $codes) (i32.const 12))) (local.get $codes))))
              (else
                (v128.store64_lane 0 (i32.add (local.get $out) (i32.add (local.get $row) (local.get $j)))
                  (i8x16.shuffle 0 2 4 6 8 10 12 14 0 2 4 6 8 10 12 14 (local.get $codes) (local.get $codes)))))
            (local.set $j (i32.add (local.get $j) (i32.const 8)))
            (br $next8)))
        (call $tail (local.get $vals) (i32.add (local.get $row) (local.get $j)) (i32.add (local.get $row) (local.get $n)) (i32.const 0)
          (local.get $scale) (local.get $zp) (local.get $row) (f64.const 0) (f64.const 0) (local.get $out) (local.get $qmin) (local.get $qmax) (local.get $nibbles))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $next_row))))

  ;; Groups: codes of rows x k values at $vals, group g of row r with scale $scale[r * G + g] and zero point
  ;; $zp[r * G + g] (f64), G = ceil(k / size), to $out. With nibbles, k and size are even, or rows is 1.
  (func (export "quantize_groups") (param $vals i32) (param $rows i32) (param $k i32) (param $size i32) (param $scale i32) (param $zp i32)
        (param $out i32) (param $qmin f64) (param $qmax f64) (param $nibbles i32)
    (local $r i32) (local $g i32) (local $cell i32) (local $i i32) (local $end i32) (local $p i32)
    (local $s f64) (local $z f64) (local $sv v128) (local $zv v128)
    (local $va v128) (local $vb v128) (local $codes v128) (local $rhe v128) (local $lo v128) (local $hi v128)
    (local.set $qmin (f64.add (local.get $qmin) (global.get $RHE)))
    (local.set $qmax (f64.add (local.get $qmax) (global.get $RHE)))
    (local.set $rhe (f64x2.splat (global.get $RHE)))
    (local.set $lo (f64x2.splat (local.get $qmin)))
    (local.set $hi (f64x2.splat (local.get $qmax)))
    (block $rows_done
      (loop $next_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $g (i32.const 0))
        (block $groups_done
          (loop $next_group
            (br_if $groups_done (i32.ge_u (local.get $g) (local.get $k)))
            (local.set $s (f64.load (i32.add (local.get $scale) (i32.shl (local.get $cell) (i32.const 3)))))
            (local.set $z (f64.load (i32.add (local.get $zp) (i32.shl (local.get $cell) (i32.const 3)))))
            (local.set $sv (f64x2.splat (local.get $s)))
            (local.set $zv (f64x2.splat (local.get $z)))
            (local.set $i (i32.add (i32.mul (local.get $r) (local.get $k)) (local.get $g)))
            (local.set $end (i32.add (i32.mul (local.get $r) (local.get $k)) (select (local.get $k) (i32.add (local.get $g) (local.get $size)) (i32.gt_u (i32.add (local.get $g) (local.get $size)) (local.get $k)))))
            (block $vector_done
              (loop $next8
                (br_if $vector_done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $end)))
                (local.set $p (i32.add (local.get $vals) (i32.shl (local.get $i) (i32.const 2))))
            (local.set $va (v128.load (local.get $p)))
            (local.set $vb (v128.load offset=16 (local.get $p)))
            (local.set $codes (i16x8.narrow_i32x4_s
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (local.get $va)) (local.get $sv)) (local.get $rhe)) (local.get $zv)) (local.get $lo)) (local.get $hi))
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $va) (local.get $va))) (local.get $sv)) (local.get $rhe)) (local.get $zv)) (local.get $lo)) (local.get $hi)))
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (local.get $vb)) (local.get $sv)) (local.get $rhe)) (local.get $zv)) (local.get $lo)) (local.get $hi))
              (f64x2.pmin (f64x2.pmax (f64x2.add (f64x2.add (f64x2.div (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $vb) (local.get $vb))) (local.get $sv)) (local.get $rhe)) (local.get $zv)) (local.get $lo)) (local.get $hi)))))
            (if (local.get $nibbles)
              (then
                ;; i32 lane i holds codes 2i, 2i+1 as 16-bit halves: masked, lane | lane >> 12 has both nibbles in its low byte
                (local.set $codes (v128.and (local.get $codes) (i16x8.splat (i32.const 15))))
                (v128.store32_lane 0 (i32.add (local.get $out) (i32.shr_u (local.get $i) (i32.const 1)))
                  (i8x16.shuffle 0 4 8 12 0 4 8 12 0 4 8 12 0 4 8 12
                    (v128.or (local.get $codes) (i32x4.shr_u (local.get $codes) (i32.const 12))) (local.get $codes))))
              (else
                (v128.store64_lane 0 (i32.add (local.get $out) (local.get $i))
                  (i8x16.shuffle 0 2 4 6 8 10 12 14 0 2 4 6 8 10 12 14 (local.get $codes) (local.get $codes)))))
                (local.set $i (i32.add (local.get $i) (i32.const 8)))
                (br $next8)))
            (call $tail (local.get $vals) (local.get $i) (local.get $end) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)
              (local.get $s) (local.get $z) (local.get $out) (local.get $qmin) (local.get $qmax) (local.get $nibbles))
            (local.set $cell (i32.add (local.get $cell) (i32.const 1)))
            (local.set $g (i32.add (local.get $g) (local.get $size)))
            (br $next_group)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $next_row))))

  ;; Columns: widens $min[j] and $max[j] (f32) by every value (r, j) of rows x n values at $vals; 1 if one was NaN.
  (func (export "minmax_columns") (param $vals i32) (param $rows i32) (param $n i32) (param $min i32) (param $max i32) (result i32)
    (local $r i32) (local $j i32) (local $p i32) (local $q i32) (local $v v128) (local $x f32) (local $nan v128) (local $nan1 i32)
    (block $rows_done
      (loop $next_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $j (i32.const 0))
        (block $vector_done
          (loop $next4
            (br_if $vector_done (i32.gt_u (i32.add (local.get $j) (i32.const 4)) (local.get $n)))
            (local.set $p (i32.add (local.get $vals) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $n)) (local.get $j)) (i32.const 2))))
            (local.set $q (i32.shl (local.get $j) (i32.const 2)))
            (local.set $v (v128.load (local.get $p)))
            (local.set $nan (v128.or (local.get $nan) (f32x4.ne (local.get $v) (local.get $v))))
            (v128.store (i32.add (local.get $min) (local.get $q)) (f32x4.pmin (v128.load (i32.add (local.get $min) (local.get $q))) (local.get $v)))
            (v128.store (i32.add (local.get $max) (local.get $q)) (f32x4.pmax (v128.load (i32.add (local.get $max) (local.get $q))) (local.get $v)))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $next4)))
        (block $tail_done
          (loop $next1
            (br_if $tail_done (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $x (f32.load (i32.add (local.get $vals) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $n)) (local.get $j)) (i32.const 2)))))
            (local.set $q (i32.shl (local.get $j) (i32.const 2)))
            (local.set $nan1 (i32.or (local.get $nan1) (f32.ne (local.get $x) (local.get $x))))
            (f32.store (i32.add (local.get $min) (local.get $q))
              (select (local.get $x) (f32.load (i32.add (local.get $min) (local.get $q))) (f32.lt (local.get $x) (f32.load (i32.add (local.get $min) (local.get $q))))))
            (f32.store (i32.add (local.get $max) (local.get $q))
              (select (local.get $x) (f32.load (i32.add (local.get $max) (local.get $q))) (f32.gt (local.get $x) (f32.load (i32.add (local.get $max) (local.get $q))))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $next1)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $next_row)))
    (i32.or (local.get $nan1) (v128.any_true (local.get $nan))))

  ;; Groups: the min and max (from 0) of each group of rows x k values at $vals, to $min/$max[r * G + g] (f32);
  ;; 1 if a value was NaN.
  (func (export "minmax_groups") (param $vals i32) (param $rows i32) (param $k i32) (param $size i32) (param $min i32) (param $max i32) (result i32)
    (local $r i32) (local $g i32) (local $cell i32) (local $i i32) (local $end i32) (local $v v128) (local $lo v128) (local $hi v128)
    (local $a f32) (local $b f32) (local $x f32) (local $nan v128) (local $nan1 i32)
    (block $rows_done
      (loop $next_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $g (i32.const 0))
        (block $groups_done
          (loop $next_group
            (br_if $groups_done (i32.ge_u (local.get $g) (local.get $k)))
            (local.set $i (i32.add (i32.mul (local.get $r) (local.get $k)) (local.get $g)))
            (local.set $end (i32.add (i32.mul (local.get $r) (local.get $k)) (select (local.get $k) (i32.add (local.get $g) (local.get $size)) (i32.gt_u (i32.add (local.get $g) (local.get $size)) (local.get $k)))))
            (local.set $lo (v128.const f32x4 0 0 0 0))
            (local.set $hi (v128.const f32x4 0 0 0 0))
            (block $vector_done
              (loop $next4
                (br_if $vector_done (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $end)))
                (local.set $v (v128.load (i32.add (local.get $vals) (i32.shl (local.get $i) (i32.const 2)))))
                (local.set $nan (v128.or (local.get $nan) (f32x4.ne (local.get $v) (local.get $v))))
                (local.set $lo (f32x4.pmin (local.get $lo) (local.get $v)))
                (local.set $hi (f32x4.pmax (local.get $hi) (local.get $v)))
                (local.set $i (i32.add (local.get $i) (i32.const 4)))
                (br $next4)))
            ;; lanes are finite or 0 (NaN never enters): f32.min/max over them equal the scalar scan's compares
            (local.set $a (f32.min (f32.min (f32x4.extract_lane 0 (local.get $lo)) (f32x4.extract_lane 1 (local.get $lo)))
                                   (f32.min (f32x4.extract_lane 2 (local.get $lo)) (f32x4.extract_lane 3 (local.get $lo)))))
            (local.set $b (f32.max (f32.max (f32x4.extract_lane 0 (local.get $hi)) (f32x4.extract_lane 1 (local.get $hi)))
                                   (f32.max (f32x4.extract_lane 2 (local.get $hi)) (f32x4.extract_lane 3 (local.get $hi)))))
            (block $tail_done
              (loop $next1
                (br_if $tail_done (i32.ge_u (local.get $i) (local.get $end)))
                (local.set $x (f32.load (i32.add (local.get $vals) (i32.shl (local.get $i) (i32.const 2)))))
                (local.set $nan1 (i32.or (local.get $nan1) (f32.ne (local.get $x) (local.get $x))))
                (local.set $a (select (local.get $x) (local.get $a) (f32.lt (local.get $x) (local.get $a))))
                (local.set $b (select (local.get $x) (local.get $b) (f32.gt (local.get $x) (local.get $b))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $next1)))
            (f32.store (i32.add (local.get $min) (i32.shl (local.get $cell) (i32.const 2))) (local.get $a))
            (f32.store (i32.add (local.get $max) (i32.shl (local.get $cell) (i32.const 2))) (local.get $b))
            (local.set $cell (i32.add (local.get $cell) (i32.const 1)))
            (local.set $g (i32.add (local.get $g) (local.get $size)))
            (br $next_group)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $next_row)))
    (i32.or (local.get $nan1) (v128.any_true (local.get $nan))))

  ;; MatMulNBits' B from int4 codes stored [K][N] (two to a byte along N, low nibble first; K and N even): row n
  ;; of B, $rowBytes bytes at $out + n * $rowBytes, holds codes (k, n) along k, two to a byte, each nibble XOR-ed
  ;; with $flip (0x88 turns signed codes unsigned). Bytes j of stored rows k, k+1 (codes n = 2j, 2j+1) give byte
  ;; k/2 of B rows 2j and 2j+1; 16 such j at a time, their 32 bytes stored one by one (a column of B).
  (func (export "pack_nibbles_columns") (param $raw i32) (param $k i32) (param $n i32) (param $out i32) (param $rowBytes i32) (param $flip i32)
    (local $half i32) (local $kk i32) (local $low i32) (local $high i32) (local $j i32) (local $o i32) (local $step i32)
    (local $a v128) (local $b v128) (local $e v128) (local $d v128) (local $fv v128) (local $x i32) (local $y i32)
    (local.set $half (i32.shr_u (local.get $n) (i32.const 1)))
    (local.set $step (i32.shl (local.get $rowBytes) (i32.const 1)))
    (local.set $fv (i8x16.splat (local.get $flip)))
    (block $rows_done
      (loop $next_pair
        (br_if $rows_done (i32.ge_u (local.get $kk) (local.get $k)))
        (local.set $low (i32.add (local.get $raw) (i32.mul (local.get $kk) (local.get $half))))
        (local.set $high (i32.add (local.get $low) (local.get $half)))
        (local.set $o (i32.add (local.get $out) (i32.shr_u (local.get $kk) (i32.const 1))))
        (local.set $j (i32.const 0))
        (block $vector_done
          (loop $next16
            (br_if $vector_done (i32.gt_u (i32.add (local.get $j) (i32.const 16)) (local.get $half)))
            (local.set $a (v128.xor (v128.load (i32.add (local.get $low) (local.get $j))) (local.get $fv)))
            (local.set $b (v128.xor (v128.load (i32.add (local.get $high) (local.get $j))) (local.get $fv)))
            ;; even rows: low nibbles of a and b; odd rows: their high nibbles
            (local.set $e (v128.or (v128.and (local.get $a) (i8x16.splat (i32.const 15))) (i8x16.shl (local.get $b) (i32.const 4))))
            (local.set $d (v128.or (i8x16.shr_u (local.get $a) (i32.const 4)) (v128.and (local.get $b) (i8x16.splat (i32.const 240)))))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 0 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 0 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 1 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 1 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 2 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 2 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 3 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 3 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 4 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 4 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 5 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 5 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 6 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 6 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 7 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 7 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 8 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 8 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 9 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 9 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 10 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 10 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 11 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 11 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 12 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 12 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 13 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 13 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 14 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 14 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (i32.store8 (local.get $o) (i8x16.extract_lane_u 15 (local.get $e)))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i8x16.extract_lane_u 15 (local.get $d)))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $next16)))
        (block $tail_done
          (loop $next1
            (br_if $tail_done (i32.ge_u (local.get $j) (local.get $half)))
            (local.set $x (i32.xor (i32.load8_u (i32.add (local.get $low) (local.get $j))) (local.get $flip)))
            (local.set $y (i32.xor (i32.load8_u (i32.add (local.get $high) (local.get $j))) (local.get $flip)))
            (i32.store8 (local.get $o) (i32.or (i32.and (local.get $x) (i32.const 15)) (i32.shl (i32.and (local.get $y) (i32.const 15)) (i32.const 4))))
            (i32.store8 (i32.add (local.get $o) (local.get $rowBytes)) (i32.or (i32.shr_u (local.get $x) (i32.const 4)) (i32.and (local.get $y) (i32.const 240))))
            (local.set $o (i32.add (local.get $o) (local.get $step)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $next1)))
        (local.set $kk (i32.add (local.get $kk) (i32.const 2)))
        (br $next_pair))))

  ;; MatMulNBits' B from int4 codes stored [N][K] (K even): row n's K/2 bytes, XOR-ed with $flip, at
  ;; $out + n * $rowBytes.
  (func (export "pack_nibbles_rows") (param $raw i32) (param $k i32) (param $n i32) (param $out i32) (param $rowBytes i32) (param $flip i32)
    (local $half i32) (local $r i32) (local $j i32) (local $src i32) (local $dst i32) (local $fv v128)
    (local.set $half (i32.shr_u (local.get $k) (i32.const 1)))
    (local.set $fv (i8x16.splat (local.get $flip)))
    (block $rows_done
      (loop $next_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $n)))
        (local.set $src (i32.add (local.get $raw) (i32.mul (local.get $r) (local.get $half))))
        (local.set $dst (i32.add (local.get $out) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $j (i32.const 0))
        (block $vector_done
          (loop $next16
            (br_if $vector_done (i32.gt_u (i32.add (local.get $j) (i32.const 16)) (local.get $half)))
            (v128.store (i32.add (local.get $dst) (local.get $j)) (v128.xor (v128.load (i32.add (local.get $src) (local.get $j))) (local.get $fv)))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $next16)))
        (block $tail_done
          (loop $next1
            (br_if $tail_done (i32.ge_u (local.get $j) (local.get $half)))
            (i32.store8 (i32.add (local.get $dst) (local.get $j)) (i32.xor (i32.load8_u (i32.add (local.get $src) (local.get $j))) (local.get $flip)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $next1)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $next_row))))
)
