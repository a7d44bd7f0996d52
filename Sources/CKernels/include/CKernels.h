// CPU kernels of swift-megatron: the hot loops behind MegatronCore's Swift API.
//
// Conventions: matrices are row-major; `rows` × `cols` with rows = tokens and cols = features.
// A kernel works on the row range its caller hands it, so the caller splits work across threads.
// Parameter-gradient outputs (dgamma, dbeta, dbias, dweight) are accumulated (+=), as gradient
// accumulation over micro-batches needs. Sizes are `long`.
#ifndef MG_CKERNELS_H
#define MG_CKERNELS_H

#include <stdint.h>

// MARK: elementwise (elementwise.c)

/// y[i] = x[i]
void mg_copy(float *y, const float *x, long n);
/// y[i] = a[i] + b[i]
void mg_add(float *y, const float *a, const float *b, long n);
/// y[i] += alpha · x[i]
void mg_axpy(float *y, const float *x, float alpha, long n);
/// y[i] = alpha · y[i]
void mg_scale(float *y, float alpha, long n);
/// x[r, c] += bias[c]
void mg_bias_add(float *x, const float *bias, long rows, long cols);
/// sums[c] += Σ_r x[r, c]: the bias gradient of a linear layer.
void mg_column_sum_accumulate(float *sums, const float *x, long rows, long cols);
/// Σ x[i]², accumulated in double.
double mg_sum_of_squares(const float *x, long n);

/// y = gelu(x + bias) with Megatron's tanh approximation
/// gelu(u) = ½·u·(1 + tanh(√(2/π)·(u + 0.044715·u³))), or with `exact` PyTorch's F.gelu
/// gelu(u) = ½·u·(1 + erf(u/√2)); bias may be NULL.
void mg_gelu_forward(float *y, const float *x, const float *bias, long rows, long cols, int exact);
/// dx = dy · gelu'(x + bias) and dbias += Σ_r dx; bias and dbias may be NULL. dx may alias dy.
void mg_gelu_backward(float *dx, float *dbias, const float *dy, const float *x, const float *bias, long rows, long cols,
                      int exact);

/// SwiGLU: x is [rows, 2·f] = [x1 | x2]; y[rows, f] = silu(x1) · x2 with silu(u) = u·σ(u).
void mg_swiglu_forward(float *y, const float *x, long rows, long f);
/// dx[rows, 2·f] = [dy · x2 · silu'(x1) | dy · silu(x1)].
void mg_swiglu_backward(float *dx, const float *dy, const float *x, long rows, long f);

/// y[i] = x[i] · keep_i / p_keep over flat indices [first, first + n) of the dropout stream
/// (seed, stream); keep_i compares 16 bits of Philox4x32-10 with p_keep (see philox.c).
/// Applying it to a gradient with the same arguments is dropout's backward. y may alias x.
void mg_dropout(float *y, const float *x, long n, uint64_t first, float p_keep, uint64_t seed, uint64_t stream);

/// The 256 multipliers (1/p_keep or 0) of dropout elements [first, first + 256), first a multiple of 256,
/// with `threshold` = p_keep·2³²: by the AVX2 path when `vectorised` and the CPU has AVX2, else by the
/// portable one. The kernels always use the fastest; tests check that both give the same bits.
void mg_dropout_multipliers_using(int vectorised, float *out, uint64_t seed, uint64_t stream, uint64_t first,
                                  uint64_t threshold, float scale);

/// Megatron's bias-dropout-add: out = residual + dropout(x + bias), bias may be NULL, over rows
/// [row0, row0 + rows) of a [·, cols] tensor (the dropout index is row · cols + col).
void mg_bias_dropout_add(float *out, const float *x, const float *bias, const float *residual,
                         long row0, long rows, long cols, float p_keep, uint64_t seed, uint64_t stream);

// MARK: normalisation (norms.c)

/// LayerNorm: y = (x − μ)·ρ·γ + β with μ, σ² the row mean and (biased) variance and
/// ρ = 1/√(σ² + eps); saves μ and ρ per row. beta may be NULL.
void mg_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, long rows, long cols, float eps);
/// dx = ρ·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ, x̂ = (x − μ)·ρ, added to dx when `accumulate`,
/// written over it (whatever it held) otherwise;
/// dgamma += Σ_r dy·x̂, dbeta += Σ_r dy (dbeta may be NULL).
void mg_layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *gamma, const float *mean, const float *rstd,
                           long rows, long cols, int accumulate);
/// RMSNorm: y = x·ρ·γ with ρ = 1/√(mean(x²) + eps); saves ρ per row.
void mg_rmsnorm_forward(float *y, float *rstd, const float *x, const float *gamma, long rows, long cols, float eps);
/// dx (+)= ρ·(g − x̂·mean(g·x̂)) with g = dy·γ, x̂ = x·ρ, as for LayerNorm; dgamma += Σ_r dy·x̂.
void mg_rmsnorm_backward(float *dx, float *dgamma, const float *dy, const float *x, const float *gamma,
                         const float *rstd, long rows, long cols, int accumulate);

// MARK: embedding (embedding.c)

/// out[t, :] = word[ids[t] − vocab_start, :] + (position ? position[positions[t], :] : 0), where
/// `word` holds rows vocab_start ..< vocab_start + vocab_rows of the vocabulary (a tensor-parallel
/// shard, or all of it); an id outside the shard contributes a zero row.
void mg_embedding_forward(float *out, const float *word, long vocab_start, long vocab_rows, const int32_t *ids,
                          const float *position, const int32_t *positions, long tokens, long hidden);
/// dword[ids[t] − vocab_start, c] += dout[t, c] for ids in the shard; dposition[positions[t], c] +=
/// dout[t, c] (if dposition), for columns [col0, col1) only: threads split the hidden dimension, so
/// no two write one row element.
void mg_embedding_backward(float *dword, long vocab_start, long vocab_rows, float *dposition, const float *dout,
                           const int32_t *ids, const int32_t *positions, long tokens, long hidden, long col0, long col1);

/// mg_embedding_forward over a word table stored in 16 bits (`precision` MG_PRECISION_F16 or _BF16),
/// converted row by row; the position table is fp32.
void mg_embedding_forward_half(float *out, const uint16_t *word, int precision, long vocab_start, long vocab_rows,
                               const int32_t *ids, const float *position, const int32_t *positions, long tokens, long hidden);
/// mg_embedding_backward's word part into a 16-bit gradient table: each element is converted, added to
/// in fp32 and rounded back (mg_accumulate_half), once per token.
void mg_embedding_backward_half(uint16_t *dword, int precision, long vocab_start, long vocab_rows, const float *dout,
                                const int32_t *ids, long tokens, long hidden, long col0, long col1);

// MARK: rotary position embedding (rope.c)

/// Rotates, in place, the first `rot_dim` features of each of `heads` heads of each token row:
/// with x = [x1 | x2] (halves of rot_dim/2), y = [x1·cos − x2·sin | x2·cos + x1·sin], the angles of
/// token t being cos_table/sin_table[positions[t], 0 ..< rot_dim/2]. head_offsets[h] is the first
/// column of head h in a row of `ld` floats. `direction` −1 applies the inverse rotation, which is
/// the backward of the forward.
void mg_rope_apply(float *x, long ld, const long *head_offsets, long heads, long tokens, long rot_dim,
                   const int32_t *positions, const float *cos_table, const float *sin_table, int direction);

// MARK: attention (attention.c)

/// Where one attention head's rows live: element (t, c) of Q is q[t·ldq + c], etc.
typedef struct {
    const float *q; long ldq;
    const float *k; long ldk;
    const float *v; long ldv;
    float *out; long ldo;
} mg_attention_head;

/// Scratch floats one thread needs for mg_attention_*: K and V packed for one head, and a panel's
/// scores, their gradients, and its Q and dO rows.
long mg_attention_scratch_floats(long seq, long d, long block_rows);

/// Causal (or full) attention core for one head, `queries` query rows over `seq` key rows (the same
/// for self-attention; causal needs them equal), head dimension `d`:
/// out = dropout(softmax(scale·QKᵀ + bias + mask))·V, computed one panel of `block_rows` query rows
/// at a time, so at most block_rows × seq scores exist at once. Saves lse[i] = log Σ_j exp(z_ij)
/// per query row for the backward. Dropout (p_keep < 1) of probability (i, j) uses element
/// (head_index·queries + i)·seq + j of stream (seed, stream), head_index numbering (batch, head) pairs.
/// first_key (NULL: all 0) gives per query row the first key it may see, for attention that stays
/// within documents (Megatron's --reset-attention-mask); it must not exceed the row. Only the first
/// `keys` (1 ... seq) keys are seen: a sequence padded after them (BERT's padding mask). bias_table
/// (NULL: none) adds bias_table[bias_bucket[i·seq + j]] to score (i, j) after the scaling (T5's
/// relative position buckets).
void mg_attention_forward(mg_attention_head head, float *lse, long queries, long seq, long keys, long d, float scale, int causal,
                          const int32_t *first_key, const float *bias_table, const int32_t *bias_bucket,
                          long block_rows, float p_keep, uint64_t seed, uint64_t stream, long head_index, float *scratch);

/// Gradients of one query head given dO (ldo-strided like out): writes dq, accumulates dk and dv
/// (the caller zeroes them once per key/value head, so query heads sharing them under
/// grouped-query attention all add in) and, with a bias, each score's gradient into
/// dbias_table[its bucket]. Recomputes the scores panel by panel from lse.
void mg_attention_backward(mg_attention_head head, const float *lse, const float *dout,
                           float *dq, long lddq, float *dk, long lddk, float *dv, long lddv,
                           long queries, long seq, long keys, long d, float scale, int causal, const int32_t *first_key,
                           const float *bias_table, const int32_t *bias_bucket, float *dbias_table, long block_rows,
                           float p_keep, uint64_t seed, uint64_t stream, long head_index, float *scratch);

// MARK: GEMM of few rows (skinny_gemm.c)

/// y[i·ldy + j] = α·Σ_p x[i·ldx + p]·w[j·ldw + p] + β·y[i·ldy + j] for i < m, j < n (y = α·x·wᵀ + β·y),
/// each row of w read once for all m rows of x: for small m (a decode step). A row's result does
/// not depend on m or on the row's place among them.
void mg_skinny_gemm_nt(float *y, long ldy, const float *x, long ldx, const float *w, long ldw,
                       long m, long n, long k, float alpha, float beta);

// MARK: paged attention (paged_attention.c)

/// One query row q [d] against the first `visible` positions of a sequence in a paged key/value
/// cache: position j's key is the row keys[(blocks[j / block_size]·block_size + j % block_size)·ld],
/// its value likewise in `values` (both pointing at this head's key/value group in row 0 of the
/// pool). out [d] = Σ_j softmax_j(scale·q·k_j)·v_j; scores needs `visible` floats of scratch.
void mg_paged_attention(float *out, const float *q, long d, const float *keys, const float *values, long ld,
                        const int32_t *blocks, long block_size, long visible, float scale, float *scores);

// MARK: loss (cross_entropy.c)

/// Softmax cross-entropy over `vocab` logits per row, fused with its backward:
/// loss[r] = logsumexp(logits[r]) − logits[r, target[r]]; when grad_weight is not NULL the logits
/// row is overwritten by its gradient grad_weight[r]·(softmax(logits[r]) − onehot(target[r])).
void mg_cross_entropy(float *logits, float *loss, const int32_t *target, const float *grad_weight,
                      long rows, long vocab);
/// Per row of a shard of the vocabulary's logits: row_max[r] = max_j logits[r, j].
void mg_row_maxima(const float *logits, float *row_max, long rows, long vocab);
/// Per row: sum_exp[r] = Σ_j exp(logits[r, j] − row_max[r]) (row_max: the maximum over the whole
/// vocabulary); with `store`, the logits are overwritten by those exponentials.
void mg_exp_row_sums(float *logits, const float *row_max, float *sum_exp, long rows, long vocab, int store);
/// Per row: logits[r, :] *= scale[r].
void mg_scale_rows(float *logits, const float *scale, long rows, long vocab);

// MARK: optimizer (optimizer.c)

/// AdamW (decoupled weight decay, as Megatron's fused Adam with adam_w_mode):
/// g ← grad_scale·g; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
/// p ← p − lr·((m/bc1) / (√(v/bc2) + eps) + wd·p), bc1 = 1 − β1^step, bc2 = 1 − β2^step.
void mg_adamw(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, long n,
              float lr, float beta1, float beta2, float eps, float weight_decay,
              float bias_correction1, float bias_correction2, float grad_scale);
/// SGD with momentum and L2 weight decay, as torch.optim.SGD: g ← grad_scale·g + wd·p;
/// buf ← first_step ? g : momentum·buf + g; p ← p − lr·buf.
void mg_sgd(float *param, const float *grad, float *momentum_buffer, long n, float lr, float momentum,
            float weight_decay, float grad_scale, int first_step);

/// The precisions fp32 values are rounded to (mg_round, mg_unscale_gradients).
enum { MG_PRECISION_F32 = 0, MG_PRECISION_F16 = 1, MG_PRECISION_BF16 = 2 };

/// Megatron's unscaling of loss-scaled gradients: g[i] is rounded to `precision` (fp16 overflow becomes
/// ±inf), checked, then multiplied by inverse_scale. Returns 1 when a rounded value was inf or NaN
/// (before scaling, as torch._amp_foreach_non_finite_check_and_unscale_).
int mg_unscale_gradients(float *g, long n, float inverse_scale, int precision);

// MARK: precision conversion (convert.c)

/// fp16 / bfloat16 (the format named by `precision`, MG_PRECISION_F16 or MG_PRECISION_BF16) → fp32
/// (exact), and fp32 → fp16 / bfloat16, rounding to nearest, ties to even; NaN stays NaN.
void mg_half_to_f32(float *y, const uint16_t *x, long n, int precision);
void mg_f32_to_half(uint16_t *y, const float *x, long n, int precision);
/// y ← round(y + x) in the 16-bit format `precision`: a gradient stored in 16 bits accumulating an
/// fp32 contribution.
void mg_accumulate_half(uint16_t *y, const float *x, long n, int precision);
/// The fp32 main parameters of bfloat16 parameters kept as their bf16 values and the 16 bits the
/// bf16 values lack (Transformer Engine's store_param_remainders): main = bits(param << 16 + remainder),
/// the remainder a signed 16-bit integer. Splitting rounds the bf16 value half up in magnitude (the
/// low 16 bits' top bit set carries into the high half), so every remainder fits 16 bits.
void mg_join_remainders(float *main, const uint16_t *param, const int16_t *remainder, long n);
void mg_split_remainders(uint16_t *param, int16_t *remainder, const float *main, long n);
/// y = x rounded to the nearest value of `precision` (MG_PRECISION_F32: x itself; fp16 and bfloat16 as
/// above), kept in fp32: what a copy of x in that precision holds. y may be x.
void mg_round(float *y, const float *x, long n, int precision);

/// 1 when this CPU runs the AVX2+FMA+F16C clones of the kernels.
int mg_cpu_has_avx2_fma(void);

/// Returns the C heap's free pages to the system (glibc's malloc_trim; nothing elsewhere) (heap.c).
void mg_trim_heap(void);

#endif
