"""Goal-image environments, make_env, policies and collection: the contract of DESIGN.md, headless."""

import gymnasium
import numpy as np
import pytest

from vjepa_world.envs import (
    PENDULUM_ID,
    POINT_MASS_ID,
    REACHER_ID,
    TWO_ROOMS_ID,
    PixelObservation,
    collect_episodes,
    make_env,
    make_policy,
)

GOAL_ENVS = {  # action dim, state dim, time limit
    REACHER_ID: (2, 6, 50),
    PENDULUM_ID: (1, 3, 100),
    POINT_MASS_ID: (2, 4, 50),
    TWO_ROOMS_ID: (2, 4, 100),
}


@pytest.fixture(params=list(GOAL_ENVS))
def goal_env(request):
    env = make_env(request.param, image_size=48)
    yield request.param, env
    env.close()


def test_reset_and_step_follow_the_contract(goal_env):
    env_id, env = goal_env
    action_dim, state_dim, limit = GOAL_ENVS[env_id]
    assert env.action_space.shape == (action_dim,)
    frame, info = env.reset(seed=3)
    assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8
    assert info["goal_image"].shape == (48, 48, 3) and info["goal_image"].dtype == np.uint8
    assert frame.flags.writeable and info["goal_image"].flags.writeable  # torch.as_tensor takes them as is
    assert info["state"].shape == (state_dim,) and not info["is_success"]  # no episode starts solved
    assert frame.std() > 5  # something is drawn: headless rendering works
    assert not np.array_equal(frame, info["goal_image"])
    steps = 0
    truncated = False
    while not truncated:
        frame, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated and isinstance(info["is_success"], bool | np.bool_)
        assert reward == pytest.approx(-info["distance"])
    assert steps == limit


def test_same_seed_same_goal_and_frames(goal_env):
    _, env = goal_env
    runs = []
    for _ in range(2):
        frame, info = env.reset(seed=11)
        frames = [frame, info["goal_image"]]
        for t in range(5):
            frames.append(env.step(np.full(env.action_space.shape, 0.5 * (-1) ** t, np.float32))[0])
        runs.append(np.stack(frames))
    assert np.array_equal(runs[0], runs[1])
    other = env.reset(seed=12)[1]["goal_image"]
    assert not np.array_equal(other, runs[0][1])


def test_reaching_the_goal_pose_succeeds_and_looks_like_the_goal_image():
    env = make_env(REACHER_ID)
    try:
        _, info = env.reset(seed=0, options={"start": [0.3, -1.0], "goal": [1.2, 0.8]})
        assert info["distance"] > 0.05 and not info["is_success"]
        frame, info2 = env.unwrapped.set_state(info["goal_qpos"])
        assert info2["is_success"] and info2["distance"] < 1e-9
        assert np.array_equal(frame, info["goal_image"])
        # the fingertip is the end of a 0.21 m arm: |fingertip| = 0.21 when stretched out
        _, stretched = env.unwrapped.set_state([0.7, 0.0])
        assert np.linalg.norm(stretched["fingertip"]) == pytest.approx(0.21, abs=1e-6)
    finally:
        env.close()


@pytest.mark.parametrize(
    "env_id, point", [(REACHER_ID, "fingertip"), (PENDULUM_ID, "fingertip"), (POINT_MASS_ID, "position")]
)
def test_simulate_plays_what_step_would_and_leaves_the_state_alone(env_id, point):
    env = make_env(env_id, image_size=32)
    dim = env.action_space.shape[0]
    try:
        env.reset(seed=3)
        for action in (1.0, 0.5):  # start moving: simulate must carry the velocity
            env.step(np.full(dim, action, np.float32))
        before = env.unwrapped._info()["state"]
        actions = np.random.default_rng(0).uniform(-1, 1, (3, 4, dim))
        frames, points = env.unwrapped.simulate(actions)
        assert frames.shape == (3, 4, 32, 32, 3) and points.shape == (3, 4, 2)
        # every 2nd step only, without frames: the same states at the ends of each pair of steps
        none, every_other = env.unwrapped.simulate(actions, every=2, render=False)
        assert none is None and np.array_equal(every_other, points[:, 1::2])
        assert np.array_equal(env.unwrapped._info()["state"], before)
        for h, action in enumerate(actions[1]):  # sample 1, stepped for real
            frame, _, _, _, info = env.step(action.astype(np.float32))
            assert np.array_equal(frame, frames[1, h])
            np.testing.assert_allclose(info[point], points[1, h], atol=1e-6)
        with pytest.raises(ValueError, match="samples, horizon"):
            env.unwrapped.simulate(actions[0])
        with pytest.raises(ValueError, match="a multiple of 3"):
            env.unwrapped.simulate(actions, every=3)
    finally:
        env.close()


def test_pendulum_goal_angle_success():
    env = make_env(PENDULUM_ID)
    try:
        _, info = env.reset(seed=0, options={"start": 0.0, "goal": 1.0})
        assert info["distance"] == pytest.approx(1.0) and not info["is_success"]
        _, info = env.unwrapped.set_state(1.1)
        assert info["is_success"] and info["distance"] == pytest.approx(0.1)
        _, info = env.unwrapped.set_state(1.0 - 2 * np.pi)  # angles wrap
        assert info["distance"] == pytest.approx(0.0, abs=1e-9)
    finally:
        env.close()


def test_any_rendering_gymnasium_env_gets_pixel_observations():
    env = make_env("Pendulum-v1", image_size=32)
    try:
        assert isinstance(env, PixelObservation)
        frame, info = env.reset(seed=0)
        assert frame.shape == (32, 32, 3) and info["goal_image"] is None
        assert info["state"].shape == (3,) and info["is_success"] is False
    finally:
        env.close()
    env = make_env("vjepa_world.envs.pendulum:PendulumGoalEnv", image_size=16)  # module:ClassName
    try:
        assert env.reset(seed=0)[0].shape == (16, 16, 3)
    finally:
        env.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vjepa_world/ReacherGoal-v9", "did you mean"),
        ("CartPole-v1", "Discrete action space"),
        ("vjepa_world.envs:NoSuchEnv", "has no class"),
        ("no_such_module_xyz:Env", "cannot import module"),
    ],
)
def test_bad_environment_specs_give_one_line_errors(spec, message):
    with pytest.raises(ValueError, match=message) as caught:
        make_env(spec)
    assert "\n" not in str(caught.value)


def test_policies_stay_in_bounds_and_ou_noise_is_correlated():
    space = gymnasium.spaces.Box(-2.0, 1.0, (3,), np.float32)
    for name in ("random", "ou-noise"):
        policy = make_policy(name, space, seed=0)
        actions = np.stack([policy(None, {}) for _ in range(2000)])  # (2000, 3)
        assert actions.min() >= -2.0 and actions.max() <= 1.0 and actions.std() > 0.3
        lag1 = np.mean([np.corrcoef(actions[:-1, k], actions[1:, k])[0, 1] for k in range(3)])
        assert (lag1 > 0.7) if name == "ou-noise" else (abs(lag1) < 0.1)
    assert np.array_equal(make_policy("zero", space)(None, {}), np.zeros(3, np.float32))
    lag1 = []  # "mixed": each episode (seed) is uniform random or OU, about half and half
    for seed in range(40):
        policy = make_policy("mixed", space, seed)
        actions = np.stack([policy(None, {}) for _ in range(500)])[:, 0]  # (500,)
        lag1.append(np.corrcoef(actions[:-1], actions[1:])[0, 1])
    lag1 = np.array(lag1)
    assert np.all((lag1 > 0.7) | (np.abs(lag1) < 0.15)) and 10 <= np.sum(lag1 > 0.7) <= 30, lag1
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("greedy", space)


def test_collection_is_reproducible_and_shaped():
    first = list(collect_episodes(REACHER_ID, episodes=2, steps=8, policy="ou-noise", seed=5, progress=False))
    again = list(collect_episodes(REACHER_ID, episodes=2, steps=8, policy="ou-noise", seed=5, progress=False))
    assert len(first) == 2
    for a, b in zip(first, again, strict=True):
        assert a.frames.shape == (8, 64, 64, 3) and a.actions.shape == (8, 2) and a.states.shape == (8, 6)
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
        assert not a.dones.any() and a.rewards.shape == (8,)
    assert not np.array_equal(first[0].actions, first[1].actions)
    # episode i is reproducible from make_env(spec).reset(seed=seed + i): its first frame matches
    env = make_env(REACHER_ID)
    try:
        assert np.array_equal(env.reset(seed=6)[0], first[1].frames[0])
    finally:
        env.close()
    # the environment truncates at 50 steps: asking for more gives 50
    (long,) = collect_episodes(REACHER_ID, episodes=1, steps=80, progress=False)
    assert len(long) == 50
    # by default an episode runs to the environment's time limit: 100 steps on PendulumGoal
    (whole,) = collect_episodes(PENDULUM_ID, episodes=1, progress=False)
    assert len(whole) == 100


def test_pendulum_goals_are_holdable_by_default_and_uniform_on_request():
    holdable, uniform = make_env(PENDULUM_ID), make_env(PENDULUM_ID, goals="uniform")
    try:
        angles = np.array([holdable.reset(seed=s)[1]["goal_angle"] for s in range(200)])
        assert np.abs(np.sin(angles)).max() <= 0.3 + 1e-9  # gravity's torque 5 sin(a) within the 2 N m limit
        assert (np.abs(angles) < 0.5).mean() > 0.3 and (
            np.abs(angles) > np.pi - 0.5
        ).mean() > 0.3  # both arcs
        spread = np.array([uniform.reset(seed=s)[1]["goal_angle"] for s in range(200)])
        assert (np.abs(np.sin(spread)) > 0.5).mean() > 0.4
        # a holdable goal can be held: the equilibrium torque there is within the limit, so the
        # pendulum placed at it at rest stays within the success angle under that constant torque
        goal = 0.25
        _, info = holdable.reset(seed=0, options={"start": goal, "goal": goal})
        torque = -5.0 * np.sin(goal) / 2.0  # as a fraction of the 2 N m limit
        for _ in range(20):
            _, _, _, _, info = holdable.step(np.array([torque]))
        assert info["is_success"]
    finally:
        holdable.close()
        uniform.close()
    with pytest.raises(ValueError, match="goals must be"):
        make_env(PENDULUM_ID, goals="anywhere")


def test_persistent_actions_cover_more_of_a_point_mass_room_than_independent_ones():
    """Coverage statistic: distinct cells of a 10 x 10 grid over PointMassGoal's room visited per
    episode of 50 steps from the room's centre. Independent actions make a random walk (spread ~
    sqrt(t)); held or OU ones travel (spread ~ t); "mixed" is half OU. On ReacherGoal and
    PendulumGoal, whose starts are uniform and whose bodies swing by themselves, all cover the same
    (docs/results.md). Measured: random 4.8, hold 11.0, ou-noise 9.5, mixed 7.75."""
    env = make_env(POINT_MASS_ID, image_size=8)
    space, cells = env.action_space, {}
    for name in ("random", "hold", "ou-noise", "mixed"):
        visited = []
        for seed in range(20):
            policy, seen = make_policy(name, env.action_space, seed), set()
            _, info = env.reset(seed=seed, options={"start": [0.0, 0.0]})
            for _ in range(50):
                _, _, _, _, info = env.step(policy(None, info))
                seen.add(tuple(np.minimum(((info["position"] + 1) * 5).astype(int), 9)))
            visited.append(len(seen))
        cells[name] = np.mean(visited)
    env.close()
    assert cells["hold"] > 1.5 * cells["random"] and cells["ou-noise"] > 1.5 * cells["random"], cells
    assert cells["random"] < cells["mixed"] < cells["ou-noise"], cells
    held = make_policy("hold", space, seed=0)
    actions = np.stack([held(None, {}) for _ in range(2000)])[:, 0]
    assert np.mean(actions[1:] == actions[:-1]) == pytest.approx(0.8, abs=0.05)  # switches 1 in 5 steps


def test_point_mass_reaches_its_terminal_speed_and_walls_stop_it():
    env = make_env(POINT_MASS_ID, image_size=32)
    env.reset(seed=0, options={"start": [-0.9, 0.0], "goal": [0.5, 0.5]})
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([1.0, 0.0], np.float32))
    # v <- 0.8 v + 0.3 per step: v_n = 1.5 (1 - 0.8^n), toward FORCE / DAMPING = 1.5
    assert info["state"][2] == pytest.approx(1.5 * (1 - 0.8**20)) and info["state"][3] == 0.0
    for _ in range(40):
        _, _, _, _, info = env.step(np.array([1.0, 1.0], np.float32))
    assert info["position"] == pytest.approx([0.92, 0.92]) and info["state"][2:] == pytest.approx([0, 0])
    env.close()


def test_point_mass_two_rooms_wall_blocks_and_door_lets_through():
    env = make_env(POINT_MASS_ID, image_size=32, layout="two_rooms")
    for start, passes in (([-0.5, 0.7], False), ([-0.5, 0.0], True)):
        env.reset(seed=0, options={"start": start, "goal": [0.5, 0.0]})
        for _ in range(40):
            _, _, _, _, info = env.step(np.array([1.0, 0.0], np.float32))
        assert (info["position"][0] > 0.5) == passes, (start, info["position"])
    with pytest.raises(ValueError, match="free floor"):
        env.reset(options={"start": [0.0, 0.8]})
    _, info = env.reset(seed=1, options={"start": [-0.5, 0.0], "goal": [-0.5, 0.05]})
    assert info["is_success"]  # within the radius
    env.close()
