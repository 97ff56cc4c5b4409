import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  forkLsn,
  formatHistory,
  identifySource,
  parseIdentity,
  parseTimelineHistory,
  type SourceIdentity,
} from './source-identity.ts';

const SYS = '7581234567890123456';
const line = (timeline: number, ...ends: [number, bigint][]): SourceIdentity => ({
  systemId: SYS,
  timeline,
  history: ends.map(([t, switchLsn]) => ({ timeline: t, switchLsn })),
});

describe('source identity', () => {
  it('reads a timeline history file as PostgreSQL writes it', () => {
    const text =
      '1\t0/3000060\tno recovery target specified\n\n# a comment\n2\t0/5000000\tat restore point "x"\n';
    assert.deepEqual(parseTimelineHistory(text), [
      { timeline: 1, switchLsn: 0x3000060n },
      { timeline: 2, switchLsn: 0x5000000n },
    ]);
    assert.throws(() => parseTimelineHistory('one\t0/1\tx'), /timeline history line 'one\t0\/1\tx'/);
  });

  const forks: { name: string; a: SourceIdentity; b: SourceIdentity; fork: bigint | undefined }[] = [
    { name: 'one timeline: no fork', a: line(2, [1, 0x50n]), b: line(2, [1, 0x50n]), fork: undefined },
    {
      name: 'a child forks where its parent ended in its line',
      a: line(1),
      b: line(2, [1, 0x50n]),
      fork: 0x50n,
    },
    { name: 'either order', a: line(2, [1, 0x50n]), b: line(1), fork: 0x50n },
    {
      name: 'a grandchild: where the common ancestor ended',
      a: line(1),
      b: line(3, [1, 0x50n], [2, 0x90n]),
      fork: 0x50n,
    },
    {
      name: 'parent and grandchild',
      a: line(2, [1, 0x50n]),
      b: line(3, [1, 0x50n], [2, 0x90n]),
      fork: 0x90n,
    },
    {
      name: 'siblings: the lower of the ends of their common ancestor',
      a: line(2, [1, 0x70n]),
      b: line(3, [1, 0x50n]),
      fork: 0x50n,
    },
    { name: 'nothing in common known: 0', a: line(4, [3, 0x70n]), b: line(2, [1, 0x50n]), fork: 0n },
  ];
  for (const c of forks) it(`fork point: ${c.name}`, () => assert.equal(forkLsn(c.a, c.b), c.fork));

  it('the header forms read back; malformed ones are named', () => {
    const id = line(3, [1, 0x3000060n], [2, 0x5000000n]);
    assert.equal(formatHistory(id.history), '1@0/3000060,2@0/5000000');
    assert.deepEqual(parseIdentity(`${SYS}:3`, '1@0/3000060,2@0/5000000'), id);
    assert.deepEqual(parseIdentity(`${SYS}:1`, ''), line(1));
    assert.throws(() => parseIdentity(`${SYS}:0`, ''), /not <system identifier>:<timeline>/);
    assert.throws(() => parseIdentity(`${SYS}:2`, '3@0/1'), /'3@0\/1' is not <ancestor timeline>@<LSN>/);
  });

  it('IDENTIFY_SYSTEM, then TIMELINE_HISTORY past timeline 1 (content as bytes or as bytea hex)', async () => {
    const commands: string[] = [];
    const conn = (timeline: string, content: unknown) => ({
      command: async (sql: string) => {
        commands.push(sql);
        return sql === 'IDENTIFY_SYSTEM'
          ? { rows: [{ systemid: SYS, timeline, xlogpos: '0/1', dbname: 'db' }] }
          : { rows: [{ filename: '00000002.history', content }] };
      },
    });
    assert.deepEqual(await identifySource(conn('1', null)), line(1));
    assert.deepEqual(commands, ['IDENTIFY_SYSTEM']);
    const file = '1\t0/50\tx\n';
    assert.deepEqual(await identifySource(conn('2', Buffer.from(file))), line(2, [1, 0x50n]));
    assert.equal(commands.at(-1), 'TIMELINE_HISTORY 2');
    assert.deepEqual(
      await identifySource(conn('2', `\\x${Buffer.from(file).toString('hex')}`)),
      line(2, [1, 0x50n]),
    );
    await assert.rejects(identifySource(conn('x', null)), /IDENTIFY_SYSTEM answered/);
  });
});
