/* The native backend's batched step (see cstep.py, which compiles and loads it). */
#include <math.h>
#include <string.h>
#include <mujoco/mujoco.h>
#include <mujoco/mjbatch.h>

/* The data fields a task may read (jaxrl_lite.envs.task.FIELD_SIZES, same order). */
enum { F_CFRC_EXT, F_CINERT, F_CVEL, F_QFRC_ACTUATOR, F_QFRC_CONSTRAINT, F_XPOS, F_XIPOS,
       F_SITE_XPOS, F_TEN_LENGTH, F_TEN_VELOCITY, F_CTRL };
/* The Position kinds (jaxrl_lite.envs.task.Position). */
enum { P_NONE, P_QPOS, P_BODY, P_MASS_CENTER };

typedef struct {
  int frame_skip, n;
  int next;  /* next env to step: threads take envs one at a time */
  int reset; /* 1: gymnasium's reset (mj_resetData, set state, mj_forward), no step */
  int pos_kind, pos_dim, pos_start, pos_body;
  int nfield, width; const int* fields;
  int rne_post; /* 1: mj_rnePostConstraint after the step (the task reads cfrc_ext) */
  const double *qpos, *qvel, *warm, *ctrl, *pos_before;
  const unsigned char *fresh;
  double *out_qpos, *out_qvel, *out_warm, *out_pos, *out_dpos, *out_fields;
  /* The JAX side's float32 layout, used instead of the float64 arrays above when
     in_packed is set: in [n, 3D + 1 + nu] (the parts hi|mid|lo of the float64 vector
     [qpos | qvel | qacc_warmstart | position] of length D, fresh, ctrl), out
     [n, 3D + pos_dim + width] (new parts, position change, fields). */
  const float* in_packed;
  float* out_packed;
  int dx;
} nb_job;

/* float64 <-> three float32 parts, exactly as float64_parts.split_f64 / join_f64. */
static double nb_join(const float* p, int D, int k) {
  return ((double)p[k] + (double)p[D + k]) + (double)p[2*D + k];
}

static void nb_split(double x, float* p, int D, int k) {
  float hi = (float)x;
  double rest = isfinite(hi) ? x - (double)hi : 0.0;
  float mid = (float)rest;
  p[k] = hi; p[D + k] = mid; p[2*D + k] = (float)(rest - (double)mid);
}

static const mjtNum* nb_field(const mjModel* m, const mjData* d, int f, int* count) {
  switch (f) {
    case F_CFRC_EXT: *count = 6*m->nbody; return d->cfrc_ext;
    case F_CINERT: *count = 10*m->nbody; return d->cinert;
    case F_CVEL: *count = 6*m->nbody; return d->cvel;
    case F_QFRC_ACTUATOR: *count = m->nv; return d->qfrc_actuator;
    case F_QFRC_CONSTRAINT: *count = m->nv; return d->qfrc_constraint;
    case F_XPOS: *count = 3*m->nbody; return d->xpos;
    case F_XIPOS: *count = 3*m->nbody; return d->xipos;
    case F_SITE_XPOS: *count = 3*m->nsite; return d->site_xpos;
    case F_TEN_LENGTH: *count = m->ntendon; return d->ten_length;
    case F_TEN_VELOCITY: *count = m->ntendon; return d->ten_velocity;
    default: *count = m->nu; return d->ctrl;
  }
}

static void nb_fields(const mjModel* m, const mjData* d, int i, const nb_job* j) {
  double* out = j->out_fields + (size_t)i*j->width;
  for (int k = 0; k < j->nfield; k++) {
    int count;
    const mjtNum* src = nb_field(m, d, j->fields[k], &count);
    memcpy(out, src, sizeof(double)*count);
    out += count;
  }
}

static void nb_position(const mjModel* m, const mjData* d, const nb_job* j, double* out) {
  int b = j->pos_body;
  if (j->pos_kind == P_QPOS) {
    for (int k = 0; k < j->pos_dim; k++) out[k] = d->qpos[j->pos_start + k];
  } else if (j->pos_kind == P_BODY) {
    for (int k = 0; k < j->pos_dim; k++) out[k] = d->xpos[3*b + k];
  } else if (j->pos_kind == P_MASS_CENTER) {
    double total = 0, x = 0, y = 0;
    for (int k = 0; k < m->nbody; k++) {
      x += m->body_mass[k]*d->xipos[3*k];
      y += m->body_mass[k]*d->xipos[3*k+1];
      total += m->body_mass[k];
    }
    out[0] = x/total; out[1] = y/total;
  }
}

static void nb_env_packed(const mjModel* m, mjData* d, int i, const nb_job* j) {
  int nq = m->nq, nv = m->nv, nu = m->nu, dim = j->pos_dim, D = j->dx;
  const float* in = j->in_packed + (size_t)i*(3*D + 1 + nu);
  float* out = j->out_packed + (size_t)i*(3*D + dim + j->width);
  double before[8], pos[8];
  d->time = 0;
  for (int k = 0; k < nq; k++) d->qpos[k] = nb_join(in, D, k);
  for (int k = 0; k < nv; k++) d->qvel[k] = nb_join(in, D, nq + k);
  for (int k = 0; k < nv; k++) d->qacc_warmstart[k] = nb_join(in, D, nq + nv + k);
  if (in[3*D] > 0) {
    mj_kinematics(m, d);  /* fresh: gymnasium's reset ran mj_forward */
    nb_position(m, d, j, before);
  } else {
    for (int k = 0; k < dim; k++) before[k] = nb_join(in, D, nq + 2*nv + k);
  }
  for (int k = 0; k < nu; k++) d->ctrl[k] = (double)in[3*D + 1 + k];
  for (int k = 0; k < j->frame_skip; k++) mj_step(m, d);
  if (j->rne_post) mj_rnePostConstraint(m, d);
  for (int k = 0; k < nq; k++) nb_split(d->qpos[k], out, D, k);
  for (int k = 0; k < nv; k++) nb_split(d->qvel[k], out, D, nq + k);
  for (int k = 0; k < nv; k++) nb_split(d->qacc_warmstart[k], out, D, nq + nv + k);
  nb_position(m, d, j, pos);
  for (int k = 0; k < dim; k++) {
    nb_split(pos[k], out, D, nq + 2*nv + k);
    out[3*D + k] = (float)(pos[k] - before[k]);
  }
  float* f = out + 3*D + dim;
  for (int k = 0; k < j->nfield; k++) {
    int count;
    const mjtNum* src = nb_field(m, d, j->fields[k], &count);
    for (int c = 0; c < count; c++) f[c] = (float)src[c];
    f += count;
  }
}

static void nb_env(const mjModel* m, mjData* d, int i, const nb_job* j) {
  int nq = m->nq, nv = m->nv, nu = m->nu, dim = j->pos_dim;
  double before[8];
  if (j->reset) {
    mj_resetData(m, d);
    memcpy(d->qpos, j->qpos + (size_t)i*nq, sizeof(double)*nq);
    memcpy(d->qvel, j->qvel + (size_t)i*nv, sizeof(double)*nv);
    mj_forward(m, d);
    nb_fields(m, d, i, j);
    return;
  }
  d->time = 0;
  memcpy(d->qpos, j->qpos + (size_t)i*nq, sizeof(double)*nq);
  memcpy(d->qvel, j->qvel + (size_t)i*nv, sizeof(double)*nv);
  memcpy(d->qacc_warmstart, j->warm + (size_t)i*nv, sizeof(double)*nv);
  if (j->fresh[i]) {
    mj_kinematics(m, d);  /* gymnasium's reset ran mj_forward: positions from qpos */
    nb_position(m, d, j, before);
  } else {
    for (int k = 0; k < dim; k++) before[k] = j->pos_before[(size_t)i*dim + k];
  }
  memcpy(d->ctrl, j->ctrl + (size_t)i*nu, sizeof(double)*nu);
  for (int k = 0; k < j->frame_skip; k++) mj_step(m, d);
  if (j->rne_post) mj_rnePostConstraint(m, d);
  memcpy(j->out_qpos + (size_t)i*nq, d->qpos, sizeof(double)*nq);
  memcpy(j->out_qvel + (size_t)i*nv, d->qvel, sizeof(double)*nv);
  memcpy(j->out_warm + (size_t)i*nv, d->qacc_warmstart, sizeof(double)*nv);
  double* pos = j->out_pos + (size_t)i*dim;
  nb_position(m, d, j, pos);
  for (int k = 0; k < dim; k++) j->out_dpos[(size_t)i*dim + k] = pos[k] - before[k];
  nb_fields(m, d, i, j);
}

/* One "simulation" per thread of the batch; each steps envs taken from a shared
   counter until none is left, so a thread the OS delays does not hold up the
   batch (dynamic balancing, as mujoco.rollout's small chunks). */
static void nb_worker(const mjModel* m, mjData* d, int sim, void* arg) {
  nb_job* j = (nb_job*)arg;
  (void)sim;
  for (;;) {
    int i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
    if (i >= j->n) break;
    if (j->in_packed) nb_env_packed(m, d, i, j);
    else nb_env(m, d, i, j);
  }
}

void* nb_make(const mjModel* m, int nsim, int nthread, char* err, int err_sz) {
  mjBatchConfig cfg;
  mjb_defaultConfig(&cfg);
  cfg.nthread = nthread;
  return mjb_makeBatch(m, nsim, &cfg, err, err_sz);
}

void nb_free(void* b) { mjb_deleteBatch((mjBatch*)b); }

/* Run job->n envs on the batch's threads; return a failed worker's id, or -1. */
int nb_step(void* b, nb_job* job) {
  mjBatch* batch = (mjBatch*)b;
  int n = mjb_nsim(batch);
  job->next = 0;
  if (!mjb_apply(batch, NULL, n, nb_worker, job, 0)) return -1;
  const int* status = mjb_status(batch);
  for (int i = 0; i < n; i++) if (status[i]) return i;
  return -1;
}

const char* nb_error(void* b, int sim) { return mjb_error((mjBatch*)b, sim); }
